"""Naming a region from several slightly moved views of its slice (test-time augmentation).

A patch-16 tower sees a 128-px slice as an 8 x 8 grid, and a slice of another subject, or one not cut as the
training slices were, lies a little differently in its frame: what a region is called changes with small moves of
the slice. Averaging the region embedding over views of the slice and its prompts, each turned, scaled and shifted a
little, smooths that out. The views are the same at every call (a fixed seed): a region is named the same way each
time. No view is mirrored, which would swap left and right.

The number of views and their ranges were chosen on FSL's MNI152 template, one of the two held-out brains, among
ten settings (docs/results.md, session 31), then measured on the other, Colin27.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medpclip.networks.model import MedPCLIP
from medpclip.networks.prompts import RegionPrompts
from medpclip.networks.vit import ImageStream

__all__ = ["NAMING_VIEWS", "view_affines", "region_embeddings"]

NAMING_VIEWS = 16  # views a region is named from by default (1: the slice as it is)
# how far a view moves the slice: rotation (degrees), scale and shift (fractions of the half-width: 5 px of 128)
MAX_ROTATION, MAX_SCALE, MAX_SHIFT = 12.0, 0.08, 0.08
# moved images encoded in one batch: one forward of 16 slices costs less than half of 16 forwards of one (2 CPU cores)
MAX_IMAGES_PER_PASS = 16


def view_affines(views: int) -> torch.Tensor:
    """``[views, 3, 3]`` maps from the slice's normalised ``(x, y)`` coordinates into each view's; the first is the
    identity, the others drawn uniformly within the ranges above from a fixed seed."""
    if views < 1:
        raise ValueError(f"views should be at least 1, got {views}.")
    generator = torch.Generator().manual_seed(0)
    out = torch.eye(3).repeat(views, 1, 1)
    for v in range(1, views):
        angle, scale, tx, ty = (2 * torch.rand(4, generator=generator) - 1).tolist()
        angle, scale = math.radians(MAX_ROTATION * angle), 1 + MAX_SCALE * scale
        cos, sin = scale * math.cos(angle), scale * math.sin(angle)
        out[v, :2] = torch.tensor([[cos, -sin, MAX_SHIFT * tx], [sin, cos, MAX_SHIFT * ty]])
    return out


def _move_points(points: torch.Tensor, affines: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Voxel ``(i, j)`` coordinates ``[B, ..., 2]`` of ``size`` slices into their views (``affines [B, 3, 3]``)."""
    h, w = size
    x, y = (2 * points[..., 1] + 1) / w - 1, (2 * points[..., 0] + 1) / h - 1  # align_corners=False
    xy = torch.stack([x, y, torch.ones_like(x)], -1)
    xy = (affines.view(len(affines), *[1] * (xy.ndim - 2), 3, 3) @ xy[..., None])[..., 0]
    i, j = ((xy[..., 1] + 1) * h - 1) / 2, ((xy[..., 0] + 1) * w - 1) / 2
    return torch.stack([i.clamp(0, h - 1), j.clamp(0, w - 1)], -1)


def _move(images: torch.Tensor, prompts: RegionPrompts, affines: torch.Tensor) -> tuple[torch.Tensor, RegionPrompts]:
    """The views of ``images [B, C, H, W]`` and their ``prompts``, each image under its own of ``affines [B, 3, 3]``."""
    size = tuple(images.shape[-2:])
    theta = torch.linalg.inv(affines)[:, :2].to(images)  # grid_sample reads each output pixel from the input
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    moved = F.grid_sample(images, grid, align_corners=False)
    masks = None
    if prompts.masks is not None:
        masks = (F.grid_sample(prompts.masks.float(), grid, align_corners=False) > 0.5).to(prompts.masks.dtype)
        # a region too thin to survive the resampling keeps its own mask
        lost = masks.flatten(2).sum(-1) == 0
        masks = torch.where(lost[..., None, None], prompts.masks, masks)
    boxes = None
    if prompts.boxes is not None:  # the box around the moved corners
        i0, j0, i1, j1 = prompts.boxes.unbind(-1)
        corners = torch.stack([torch.stack(c, -1) for c in ((i0, j0), (i0, j1), (i1, j0), (i1, j1))], -2)
        moved_corners = _move_points(corners, affines, size)
        boxes = torch.cat([moved_corners.amin(-2), moved_corners.amax(-2)], -1)
    points = None if prompts.points is None else _move_points(prompts.points, affines, size)
    return moved, RegionPrompts(points=points, point_labels=prompts.point_labels, boxes=boxes, masks=masks)


@torch.no_grad()
def region_embeddings(
    model: MedPCLIP,
    images: torch.Tensor,
    prompts: RegionPrompts,
    views: int = NAMING_VIEWS,
    prefix: ImageStream | None = None,
) -> torch.Tensor:
    """``[B, P, E]`` unit-length region embeddings of ``prompts`` on ``images [B, C, H, W]``, the mean over ``views``
    views (:func:`view_affines`; 1: the slice as it is, one pass); ``prefix``: the slice's cached image pass, which
    the first view (the slice as it is) reuses."""
    total = F.normalize(model.encode_image(images, prompts, prefix=prefix).region_embeds, dim=-1)
    moves, b = view_affines(views)[1:], images.shape[0]
    step = max(1, MAX_IMAGES_PER_PASS // b)
    for start in range(0, len(moves), step):  # a few views per pass, every image of the batch in each
        n = len(chunk := moves[start : start + step])
        moved, moved_prompts = _move(images.repeat(n, 1, 1, 1), prompts.repeat(n), chunk.repeat_interleave(b, 0))
        embeds = F.normalize(model.encode_image(moved, moved_prompts).region_embeds, dim=-1)
        total = total + embeds.unflatten(0, (n, b)).sum(0)
    return F.normalize(total, dim=-1)
