"""Bad inputs to the MONAI Bundle's ``inference.json`` (``python -m monai.bundle run --config_file
bundle/configs/inference.json --image ...``): the config installs :func:`medpclip.cli.one_line_errors` first, so an
input error ends in one line ``medpclip bundle: error: <reason>`` instead of MONAI's nested traceback, and nothing is
written to ``output_dir``. The cases run the bundle in-process (``monai.bundle.run``, what ``python -m monai.bundle
run`` calls) and show the line the installed hook prints; one runs as a real process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from battery import nifti_header_only, write_nifti
from helpers import SHIPPED, needs_checkpoint
from monai.bundle import run as bundle_run

from medpclip.cli import one_line_errors

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "bundle" / "configs" / "inference.json"

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file")  # MONAI's notice that configs run code


def _unet_weights(path: Path) -> Path:
    from monai.networks.nets import BasicUNet

    torch.save(BasicUNet(spatial_dims=2, features=(4, 4, 4, 4, 4, 4)).state_dict(), path)
    return path


# name: (overrides built from (tmp folder, good inputs), fragment)
CASES = {
    "corrupt image": (lambda t, g: {"image": str(t / "scan.nii.gz")}, "cannot read"),
    "missing image": (lambda t, g: {"image": str(t / "missing.nii.gz")}, "does not exist"),
    "huge image": (lambda t, g: {"image": str(nifti_header_only(t / "huge.nii", (4096, 4096, 2048)))}, "limit"),
    "4d image": (
        lambda t, g: {"image": str(write_nifti(t / "4d.nii.gz", np.ones((16, 16, 4, 2), np.float32)))},
        "4 dimensions",
    ),
    "click outside": (lambda t, g: {"image": str(g["nii2d"]), "points": [[400, 5]]}, "outside"),
    "truncated checkpoint": (
        lambda t, g: {"checkpoint": str(t / "model.pt")},
        "truncated or not a weights file",
    ),
    "checkpoint of another architecture": (
        lambda t, g: {"checkpoint": str(_unet_weights(t / "unet.pt"))},
        "not a MedP-CLIP checkpoint",
    ),
}


@pytest.fixture
def bad_files(tmp_path) -> Path:
    (tmp_path / "scan.nii.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    if SHIPPED.is_file():
        data = SHIPPED.read_bytes()
        (tmp_path / "model.pt").write_bytes(data[: len(data) // 3])
    return tmp_path


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@needs_checkpoint
@pytest.mark.parametrize("case", list(CASES))
def test_bundle_bad_input_is_one_line_and_writes_nothing(case, bad_files, good, monkeypatch, capsys):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # the config installs its own hook: restore it after
    out_dir = bad_files / "out"
    overrides, fragment = CASES[case]
    with pytest.raises(Exception) as raised:
        bundle_run(config_file=str(CONFIG), logging_file=False, output_dir=str(out_dir), **overrides(bad_files, good))
    capsys.readouterr()
    assert sys.excepthook is not sys.__excepthook__, "inference.json installs medpclip.cli.one_line_errors"
    sys.excepthook(type(raised.value), raised.value, raised.value.__traceback__)  # what the interpreter does last
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("medpclip bundle: error: ") and fragment in err, err
    assert not out_dir.exists(), "nothing is written"


def test_other_errors_keep_their_traceback(monkeypatch, capsys):
    """Only input errors are shortened: a bug must still show where it happened."""
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    one_line_errors("medpclip bundle")
    try:
        raise RuntimeError("Failed to evaluate ConfigExpression") from KeyError("a bug")
    except RuntimeError as err:
        sys.excepthook(type(err), err, err.__traceback__)
    assert "Traceback" in capsys.readouterr().err
    try:
        raise RuntimeError("Failed to evaluate ConfigExpression") from FileNotFoundError("image x does not exist.")
    except RuntimeError as err:
        sys.excepthook(type(err), err, err.__traceback__)
    assert capsys.readouterr().err == "medpclip bundle: error: image x does not exist.\n"


@pytest.mark.slow
@needs_checkpoint
def test_bundle_process_prints_one_error_line_and_no_traceback(bad_files):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out_dir = bad_files / "out"
    args = ["--config_file", str(CONFIG), "--image", str(bad_files / "scan.nii.gz"), "--output_dir", str(out_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert _last_line(done.stderr).startswith("medpclip bundle: error: cannot read"), done.stderr[-2000:]
    assert str(bad_files / "scan.nii.gz") in _last_line(done.stderr)
    assert not out_dir.exists()
