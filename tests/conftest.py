"""Shared fixtures: small deterministic models and prompts. No test downloads anything."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def temporary_files_under_pytest(tmp_path_factory):
    """Everything the tests start writes its temporary files under pytest's own folder, which pytest prunes, so that
    a library that leaves files in the temporary folder leaves none behind a test run."""
    folder = tmp_path_factory.mktemp("tmpdir")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(folder))
        patch.setattr(tempfile, "tempdir", None)  # recomputed from TMPDIR in this process too
        yield folder


@pytest.fixture(scope="session")
def tiny_model():
    """An untrained tiny MedP-CLIP in eval mode (do not train it: build your own for that)."""
    from medpclip.networks import build_model

    torch.manual_seed(0)
    return build_model("tiny").eval()


@pytest.fixture
def images():
    """Two random 1-channel 128x128 images."""
    return torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def make_model():
    """``make_model(mode="medpclip", open_gates=True)``: a fresh seeded tiny model in eval mode; ``open_gates``
    gives the zero-initialised gates (and Alpha-CLIP's zero conv) random values, as after training."""
    from medpclip.networks import build_model

    def make(mode: str = "medpclip", open_gates: bool = True):
        torch.manual_seed(0)
        model = build_model("tiny", region_mode=mode).eval()
        if open_gates:
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if name.endswith("gate"):
                        param.normal_(0, 0.5)
                    if name.endswith("alpha_conv.weight"):
                        param.normal_(0, 0.05)
        return model

    return make


@pytest.fixture(scope="session")
def phantom_datalist(tmp_path_factory):
    """A label datalist (form a) over one 3D phantom CT: training and validation slabs along every axis."""
    import json

    import nibabel as nib
    import numpy as np

    from medpclip.data.phantoms import random_phantom

    root = tmp_path_factory.mktemp("phantom_data")
    phantom = random_phantom(seed=1, size=48, dims=3)
    nib.save(nib.Nifti1Image(phantom.image * 400 - 100, np.eye(4)), root / "ct.nii.gz")  # roughly HU
    nib.save(nib.Nifti1Image(phantom.labels.astype(np.int16), np.eye(4)), root / "labels.nii.gz")
    slab = lambda axis, lo, hi: {"image": "ct.nii.gz", "label": "labels.nii.gz", "axis": axis, "slices": [lo, hi]}  # noqa: E731
    data = {
        "labels": {str(k): v for k, v in phantom.names.items()},
        "modality": "CT",
        "training": [slab(a, 8, 20) for a in range(3)] + [slab(a, 28, 40) for a in range(3)],
        "validation": [slab(a, 22, 26) for a in range(3)],
    }
    path = root / "datalist.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="session")
def monailabel_server(tmp_path_factory):
    """A real ``monailabel start_server`` of our app on a local datastore (the LiTS CT volume ``lits_117_ct`` and
    the bundle's 2D brain MR slice ``brain_mr``) on a free loopback port; stopped after the session."""
    import shutil
    from pathlib import Path

    from helpers import load_script

    from medpclip import bundle_dir

    launcher = load_script("monailabel_server")
    root = tmp_path_factory.mktemp("monailabel")
    launcher.write_lits_studies(root / "studies")
    shutil.copy(Path(bundle_dir()) / "docs" / "samples" / "brain_mr_axial.nii.gz", root / "studies" / "brain_mr.nii.gz")
    with launcher.running_server(root / "studies", root / "model", root / "server.log") as server:
        yield server
