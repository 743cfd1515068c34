"""Simulated clicks: placed in the larger error, at its centre (or at random inside it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medpclip.engines.interaction import add_clicks, next_clicks
from medpclip.networks import RegionPrompts


def test_clicks_go_into_the_larger_error_at_its_centre():
    target = torch.zeros(3, 21, 21, dtype=torch.bool)
    target[:, 5:16, 5:16] = True
    pred = torch.zeros_like(target)  # 0: everything missed
    pred[1] = target[1]
    pred[1, 0:4, 0:21] = True  # 1: spurious band on top
    pred[2] = target[2]  # 2: perfect
    points, labels = next_clicks(pred, target)
    assert labels.tolist() == [1, 0, -1]
    assert points[0].tolist() == [10.0, 10.0], "the centre of the missed square"
    assert points[1][0] < 4, "the negative click lies in the spurious band"
    rng = np.random.default_rng(0)
    for _ in range(20):
        points, labels = next_clicks(pred, target, "random", rng)
        i, j = points[0].long().tolist()
        assert target[0, i, j] and not pred[0, i, j]
    with pytest.raises(ValueError, match="click mode"):
        next_clicks(pred, target, "nearest")


def test_add_clicks_appends_to_any_prompt():
    boxes = RegionPrompts(boxes=torch.tensor([[[1.0, 1.0, 9.0, 9.0]]]))
    one = add_clicks(boxes, torch.tensor([[[4.0, 5.0]]]), torch.tensor([[1]]))
    two = add_clicks(one, torch.tensor([[[2.0, 2.0]]]), torch.tensor([[0]]))
    assert two.points.shape == (1, 1, 2, 2) and two.point_labels.tolist() == [[[1, 0]]]
    assert two.boxes is boxes.boxes
