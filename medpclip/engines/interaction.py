"""Simulated interaction: the next click from the error region of the current prediction.

The click goes into the larger error (missed voxels -> positive click, spurious voxels -> negative click), at the
voxel farthest from the error's border (``mode="center"``, the usual protocol for evaluating interactive
segmentation, e.g. RITM, Sofiiuk et al. 2022) or at a random error voxel (``mode="random"``, for training).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from medpclip.networks.prompts import NEGATIVE, PADDING, POSITIVE, RegionPrompts

__all__ = ["add_clicks", "center_clicks", "next_clicks"]


def next_clicks(
    pred: torch.Tensor, target: torch.Tensor, mode: str = "center", rng: np.random.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One corrective click per mask.

    Args:
        pred: ``[M, H, W]`` bool current prediction.
        target: ``[M, H, W]`` bool ground truth.
        mode: ``"center"`` (farthest from the error border) or ``"random"``.

    Returns:
        points ``[M, 2]`` float ``(i, j)`` and labels ``[M]`` (1 positive, 0 negative, -1 when nothing is wrong).
    """
    if mode not in ("center", "random"):
        raise ValueError(f"click mode {mode!r} should be 'center' or 'random'.")
    rng = rng or np.random.default_rng(0)
    pred_np, target_np = pred.bool().cpu().numpy(), target.bool().cpu().numpy()
    points = np.zeros((len(pred_np), 2), np.float32)
    labels = np.full(len(pred_np), PADDING, np.int64)
    for m, (p, t) in enumerate(zip(pred_np, target_np, strict=True)):
        missed, spurious = t & ~p, p & ~t
        error, label = (missed, POSITIVE) if missed.sum() >= spurious.sum() else (spurious, NEGATIVE)
        if not error.any():
            continue
        if mode == "center":
            distance = distance_transform_edt(np.pad(error, 1))[1:-1, 1:-1]
            points[m] = np.unravel_index(np.argmax(distance), error.shape)
        else:
            candidates = np.argwhere(error)
            points[m] = candidates[rng.integers(len(candidates))]
        labels[m] = label
    return torch.from_numpy(points).to(pred.device), torch.from_numpy(labels).to(pred.device)


def add_clicks(prompts: RegionPrompts, points: torch.Tensor, labels: torch.Tensor) -> RegionPrompts:
    """Append one click per prompt: ``points [B, P, 2]``, ``labels [B, P]`` (``-1`` adds padding)."""
    new_points, new_labels = points[:, :, None].float(), labels[:, :, None].long()
    if prompts.points is not None:
        new_points = torch.cat([prompts.points.float(), new_points], 2)
        new_labels = torch.cat([prompts.point_labels.long(), new_labels], 2)
    return RegionPrompts(points=new_points, point_labels=new_labels, boxes=prompts.boxes, masks=prompts.masks)


def center_clicks(masks: torch.Tensor) -> RegionPrompts:
    """One positive click per region at its centre (the voxel farthest from its border), the first click of
    :func:`next_clicks` ``"center"`` on an empty prediction, as the evaluation and an annotator start: ``masks
    [B, P, H, W]`` -> prompts with points ``[B, P, 1, 2]``."""
    b, p = masks.shape[:2]
    target = masks.flatten(0, 1) > 0.5
    points, labels = next_clicks(torch.zeros_like(target), target, "center")
    return RegionPrompts(points=points.view(b, p, 1, 2), point_labels=labels.view(b, p, 1))
