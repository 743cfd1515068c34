"""Optimiser parameter groups: every trainable parameter in exactly one group, at the rate its group is given."""

from __future__ import annotations

import pytest

from medpclip.networks import build_model
from medpclip.optim import parameter_groups


@pytest.mark.parametrize("region_mode", ["medpclip", "alpha"])
def test_groups_cover_each_parameter_once_at_its_rate(region_mode):
    model = build_model("tiny", region_mode=region_mode)
    groups = {g["name"]: g for g in parameter_groups(model, 1e-3, vision_scale=0.1, alpha_scale=100.0)}
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert len(grouped) == len(set(grouped)) == sum(1 for p in model.parameters() if p.requires_grad)
    assert groups["vision"]["lr"] == pytest.approx(1e-4)
    if region_mode == "alpha":
        alpha_conv = {id(p) for p in model.region_encoder.alpha_conv.parameters()}
        assert {id(p) for p in groups["alpha_conv"]["params"]} == alpha_conv
        assert groups["alpha_conv"]["lr"] == pytest.approx(0.1)
    else:  # fusion: zero-initialised gates, no alpha conv
        assert "alpha_conv" not in groups
        assert groups["gates"]["lr"] == pytest.approx(3e-2) and groups["gates"]["weight_decay"] == 0.0
