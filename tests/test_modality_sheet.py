"""scripts/modality_sheet.py: real modality frames and simulated radiographs and ultrasound on one sheet."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from helpers import load_script
from PIL import Image

sheet = load_script("modality_sheet")


def _prepared(folder):
    """A prepared folder with two real frames (PNG) and a CT and an MR volume to simulate from."""
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray((rng.random((40, 30)) * 255).astype(np.uint8)).save(folder / name)
    ct = np.where(rng.random((24, 24, 24)) > 0.5, 40.0, -1000.0).astype(np.float32)
    nib.save(nib.Nifti1Image(ct, np.eye(4)), folder / "ct.nii.gz")
    nib.save(nib.Nifti1Image(rng.random((24, 24, 24)).astype(np.float32), np.eye(4)), folder / "t1.nii.gz")
    frames = [{"image": n, "modality": m, "text": "an image"} for n, m in (("a.png", "CR"), ("b.png", "US"))]
    slab = {"image": "t1.nii.gz", "modality": "MR T1", "text": "an MR image", "axis": 0, "slices": [0, 12]}
    (folder / "datalist_modalities.json").write_text(json.dumps({"training": [*frames, slab], "validation": []}))
    for name, image, modality in (
        ("datalist_brain_aal3.json", "t1.nii.gz", "MR T1"),
        ("datalist_liver_lits.json", "ct.nii.gz", "CT"),
    ):
        (folder / name).write_text(
            json.dumps({"training": [{"image": image, "modality": modality, "text": "x"}], "validation": []})
        )
    return folder


def test_the_sheet_has_a_row_of_real_frames_and_a_row_per_simulated_family(tmp_path):
    out = tmp_path / "sheet.png"
    assert sheet.main(["--data", str(_prepared(tmp_path)), "--out", str(out), "--simulated", "3"]) == 0
    picture = np.asarray(Image.open(out).convert("L"))
    rows = 1 + len(sheet.SyntheticModalities.FAMILIES)
    assert picture.shape == (rows * (sheet.TILE + sheet.CAPTION), 3 * sheet.TILE)  # 2 frames (no slab), 3 simulated
    for row in range(rows):
        images = picture[row * (sheet.TILE + sheet.CAPTION) :][: sheet.TILE]
        assert images[:, : 2 * sheet.TILE].std() > 10, f"row {row} shows images"
    assert picture[: sheet.TILE, 2 * sheet.TILE :].max() == 0, "the real-frame row has 2 tiles, the slab is left out"


def test_unprepared_data_is_exit_2(tmp_path, capsys):
    assert sheet.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "s.png")]) == 2
    assert "run scripts/prepare_data.py first" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()
