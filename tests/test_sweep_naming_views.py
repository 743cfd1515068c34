"""scripts/sweep_naming_views.py: held-out naming under several settings of the views, one JSON row each."""

from __future__ import annotations

import json

import torch
from helpers import load_script

import medpclip.inference.views as views
from medpclip.networks import build_model, save_checkpoint


def test_sweep_writes_one_row_per_setting(tmp_path, phantom_datalist, monkeypatch):
    sweep = load_script("sweep_naming_views")
    monkeypatch.setattr(sweep, "SETTINGS", [(1, 0.0, 0.0), (2, 10.0, 0.05)])
    for name in ("MAX_ROTATION", "MAX_SCALE", "MAX_SHIFT"):  # the sweep sets them; put them back after the test
        monkeypatch.setattr(views, name, getattr(views, name))
    torch.manual_seed(0)
    checkpoint = save_checkpoint(build_model("tiny"), tmp_path / "model.pt")
    out = tmp_path / "sweep.json"
    args = ["--checkpoint", str(checkpoint), "--datalist", str(phantom_datalist), "--samples", "4", "--out", str(out)]
    assert sweep.main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["views"], r["max_rotation"], r["max_shift"]) for r in rows] == [(1, 0.0, 0.0), (2, 10.0, 0.05)]
    for row in rows:
        for key in ("top1_10way", "top1_10way_displaced", "top1", "top1_displaced"):
            assert 0 <= row[key] <= 1
