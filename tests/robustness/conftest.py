"""Fixtures of the robustness battery (helpers in battery.py): valid small inputs, a tiny model, the shipped
checkpoint loaded once, and the CLI run in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from battery import SHAPE_2D, SHAPE_3D, write_nifti
from helpers import SHIPPED, write_ct_dicom

import medpclip.networks
from medpclip.cli import main


@pytest.fixture(scope="session")
def good(tmp_path_factory) -> dict[str, Path]:
    """Valid small inputs: a 2D NIfTI, a 3D NIfTI (a bright cylinder), a 2D region mask, a CT DICOM slice."""
    root = tmp_path_factory.mktemp("good_inputs")
    rng = np.random.default_rng(0)
    image = rng.normal(40, 20, SHAPE_2D).astype(np.float32)
    image[10:25, 8:22] += 150
    volume = rng.normal(-80, 15, SHAPE_3D).astype(np.float32)
    ii, jj = np.mgrid[: SHAPE_3D[0], : SHAPE_3D[1]]
    volume[(ii - 16) ** 2 + (jj - 14) ** 2 < 64] += 150
    region = np.zeros(SHAPE_2D, np.uint8)
    region[10:25, 8:22] = 1
    return {
        "nii2d": write_nifti(root / "image2d.nii.gz", image),
        "nii3d": write_nifti(root / "volume.nii.gz", volume),
        "region2d": write_nifti(root / "region2d.nii.gz", region),
        "dicom": write_ct_dicom(root / "ct.dcm"),
    }


@pytest.fixture(scope="session")
def checkpoint_cache() -> dict:
    return {}


@pytest.fixture
def cached_checkpoints(monkeypatch, checkpoint_cache) -> None:
    """``medpclip.networks.load_checkpoint`` loads the shipped checkpoint once per session (the CLI looks it up at
    call time); any other path is loaded for real, so damaged checkpoints meet the real loader."""
    real = medpclip.networks.load_checkpoint

    def load(path, *args, **kwargs):
        if Path(path).resolve() != SHIPPED.resolve():
            return real(path, *args, **kwargs)
        if "shipped" not in checkpoint_cache:
            checkpoint_cache["shipped"] = real(path, *args, **kwargs)
        return checkpoint_cache["shipped"]

    monkeypatch.setattr(medpclip.networks, "load_checkpoint", load)


@pytest.fixture
def cli(capsys, cached_checkpoints) -> Callable[..., tuple[int, str, str]]:
    """``cli(*args)`` runs ``medpclip ARGS`` in-process: (exit code, stdout, stderr)."""

    def run(*args: object) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse errors
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def tiny() -> medpclip.networks.MedPCLIP:
    """An untrained tiny model with open gates, for API cases (errors come before any prediction matters)."""
    torch.manual_seed(0)
    model = medpclip.networks.build_model("tiny").eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("gate"):
                param.normal_(0, 0.5)
    return model
