"""The ``medpclip`` console script: demo output and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medpclip.cli", *args], capture_output=True, text=True, timeout=300)


def test_demo_writes_summary_overlays_and_masks_for_both_cases(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["weights"].endswith("bundle/models/model.pt"), "the shipped checkpoint is the default"
    cases = {case["case"]: case for case in summary["cases"]}
    assert set(cases) == {"ct_liver", "brain_mr"}
    for case in cases.values():
        for ranking in (case["region_labels"], case["image_labels"]):
            probs = [r["probability"] for r in ranking]
            assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3
        assert Path(case["overlay"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        mask = nib.load(case["mask"]["mask"])
        assert list(mask.shape[: len(case["mask"]["shape"])]) == case["mask"]["shape"]
        assert int(np.asarray(mask.dataobj).sum()) == case["mask"]["voxels"] > 0
    ct = cases["ct_liver"]
    assert ct["mask"]["slices"] > 1, "the CT click is propagated through the volume"
    assert 0 < ct["dice_vs_reference_3d"] <= 1
    assert nib.load(ct["image"]).shape == tuple(ct["mask"]["shape"])


def test_bad_checkpoint_is_one_line_exit_2(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path / "x"), "--checkpoint", str(tmp_path / "missing.pt"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr
    assert not (tmp_path / "x").exists(), "a failed run must not leave a half-written output folder"


def test_naming_views_below_one_is_one_line_exit_2():
    result = run_cli("evaluate", "--checkpoint", "x.pt", "--naming-views", "0")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "at least 1" in result.stderr
