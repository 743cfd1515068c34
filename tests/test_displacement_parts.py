"""scripts/displacement_parts.py: held-out naming under each part of the displacement, one JSON row each."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import load_script

import medpclip.data.dataset as dataset
from medpclip.networks import build_model, save_checkpoint


def test_one_row_per_part_and_the_ranges_restored(tmp_path, phantom_datalist):
    parts = load_script("displacement_parts")
    full = (dataset.DISPLACE_ROTATION, dataset.DISPLACE_SCALE, dataset.DISPLACE_SHIFT)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(build_model("tiny"), tmp_path / "model.pt")
    out = tmp_path / "parts.json"
    args = ["--checkpoint", str(checkpoint), "--datalist", str(phantom_datalist), "--samples", "2", "--out", str(out)]
    assert parts.main(args) == 0
    rows = {r["part"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == list(parts.PARTS)
    assert (rows["rotation"]["rotation"], rows["rotation"]["scale"], rows["rotation"]["shift"]) == (full[0], 0, 0)
    assert (rows["all"]["rotation"], rows["all"]["scale"], rows["all"]["shift"]) == full
    assert rows["registered"]["position_only_top1"] is None  # the lookup is reported for moved slices only
    for name, row in rows.items():
        assert 0 <= row["top1_10way"] <= 1
        if name != "registered":
            assert 0 <= row["position_only_top1"] <= 1
    assert (dataset.DISPLACE_ROTATION, dataset.DISPLACE_SCALE, dataset.DISPLACE_SHIFT) == full


@pytest.mark.parametrize("option", ["--naming-views", "--samples"])
def test_no_views_or_samples_is_a_one_line_error(tmp_path, capsys, option):
    argv = ["--checkpoint", "none.pt", "--datalist", "none.json", "--out", str(tmp_path / "o.json"), option, "0"]
    with pytest.raises(SystemExit) as exit_:
        load_script("displacement_parts").main(argv)
    assert exit_.value.code == 2
    assert "must be whole numbers >= 1" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
