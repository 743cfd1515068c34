"""scripts/contact_sheet.py: one row of sampled regions per datalist."""

from __future__ import annotations

import json

from helpers import load_script
from PIL import Image

sheet = load_script("contact_sheet")


def test_datalists_that_differ_in_their_image_only_draw_the_same_regions(phantom_datalist, tmp_path):
    """Two lists of one label volume, one image inverted: one row each, the same slices and outlines, other pixels."""
    import shutil

    import nibabel as nib

    root = shutil.copytree(phantom_datalist.parent, tmp_path / "data")
    ct = nib.load(root / "ct.nii.gz")
    nib.save(nib.Nifti1Image(-ct.get_fdata(), ct.affine), root / "inverted.nii.gz")
    data = json.loads((root / "datalist.json").read_text())
    for split in ("training", "validation"):
        data[split] = [{**item, "image": "inverted.nii.gz"} for item in data[split]]
    (root / "inverted_datalist.json").write_text(json.dumps(data))
    out = tmp_path / "sheet.png"
    args = ["--data", str(root), "--out", str(out), "--per-datalist", "3"]
    assert sheet.main([*args, "--datalist", "datalist.json", "--datalist", "inverted_datalist.json"]) == 0
    image = Image.open(out).convert("RGB")
    width, height = image.size
    assert width == 3 * sheet.TILE and height == 2 * (sheet.TILE + sheet.CAPTION), "three tiles in each of two rows"
    rows = [image.crop((0, r * height // 2, width, r * height // 2 + sheet.TILE)) for r in range(2)]
    green = [{xy for xy in _pixels(row) if row.getpixel(xy) == (0, 220, 0)} for row in rows]
    assert green[0] and green[0] == green[1], "the same region outlines in both rows"
    assert list(rows[0].getdata()) != list(rows[1].getdata()), "another image under them"
    assert sheet.main([*args, "--datalist", "missing.json"]) == 2


def _pixels(image: Image.Image) -> list[tuple[int, int]]:
    return [(x, y) for y in range(0, image.size[1], 2) for x in range(0, image.size[0], 2)]
