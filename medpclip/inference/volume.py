"""Prompts on 2D images and 3D volumes, handled slice-wise: which slice a prompt lies on, segmentation of that
slice and its propagation through the neighbouring slices (each slice prompted by the previous slice's mask), and
region classification over the prompted slices.

Coordinates are voxel indices of the image as MONAI ``LoadImage`` returns it: ``(i, j)`` for a 2D image,
``(i, j, k)`` for a volume, where the coordinate along ``axis`` picks the slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medpclip.inference.images import slice_of
from medpclip.inference.predictor import SlicePredictor
from medpclip.networks.prompts import PRIOR_LOGIT, mask_prompt

__all__ = ["SlicePrompt", "classify_region", "mask_prompt", "propagate", "resolve_prompt", "segment"]

CLASSIFY_SLICES = 5  # a 3D mask is classified on at most this many of its slices, evenly spaced


@dataclass
class SlicePrompt:
    """A prompt reduced to one slice: ``index`` along ``axis`` (None for a 2D image) and 2D ``(i, j)`` prompts."""

    index: int | None
    points: list[list[float]]
    negatives: list[list[float]]
    box: list[float] | None = None
    mask: np.ndarray | None = None  # [H, W] bool: the slice of a prior/region mask

    @property
    def is_empty(self) -> bool:
        return not self.points and not self.negatives and self.box is None and self.mask is None

    def as_args(self) -> dict:
        """Keyword arguments of :meth:`SlicePredictor.prompts`."""
        mask = None if self.mask is None else torch.from_numpy(self.mask.astype(np.float32))
        return {"points": self.points, "negatives": self.negatives, "box": self.box, "mask": mask}


def resolve_prompt(
    spatial: Sequence[int],
    *,
    points: Sequence[Sequence[float]] = (),
    negatives: Sequence[Sequence[float]] = (),
    box: Sequence[float] | None = None,
    mask: np.ndarray | None = None,
    axis: int = 2,
    slice_index: int | None = None,
) -> SlicePrompt:
    """Check the prompts against an image of ``spatial`` shape and reduce them to one slice.

    The slice of a volume is the one the clicks lie on, else ``slice_index``, else the slice where ``mask`` is
    largest, else the middle one. ``box`` is ``(i0, j0, i1, j1)`` in that slice; ``mask`` has the image's shape.
    """
    spatial = tuple(int(s) for s in spatial)
    clicks = [[float(v) for v in c] for c in (*points, *negatives)]
    if any(len(c) != len(spatial) for c in clicks):
        raise ValueError(f"clicks need {len(spatial)} coordinates for an image of shape {list(spatial)}.")
    if not all(np.isfinite(v) for c in clicks for v in c):
        raise ValueError("click coordinates must be finite numbers.")
    if box is not None and len(box) != 4:
        raise ValueError(f"box should be 4 numbers i0,j0,i1,j1, got {len(box)}.")
    if box is not None and (box[2] < box[0] or box[3] < box[1]):
        raise ValueError(f"box {tuple(box)} is reversed: need i0 <= i1 and j0 <= j1.")
    if mask is not None:
        if tuple(mask.shape) != spatial:
            raise ValueError(f"mask shape {list(mask.shape)} differs from the image shape {list(spatial)}.")
        mask = np.asarray(mask) > 0.5
        if not mask.any():
            raise ValueError("mask is empty: it marks no voxel.")
    box = None if box is None else [float(v) for v in box]
    if len(spatial) == 2:
        if slice_index is not None:
            raise ValueError("a slice index was given for a 2D image.")
        _check_inside(clicks, spatial)
        return SlicePrompt(None, clicks[: len(points)], clicks[len(points) :], box, mask)
    if axis not in (0, 1, 2):
        raise ValueError(f"slice axis should be 0, 1 or 2, got {axis}.")
    indices = {round(c[axis]) for c in clicks}
    if len(indices) > 1:
        raise ValueError(f"clicks lie on different slices along axis {axis}: {sorted(indices)}; give one slice.")
    if indices and slice_index is not None and indices != {slice_index}:
        raise ValueError(f"clicks lie on slice {indices.pop()} but slice {slice_index} was asked for.")
    if indices:
        index = indices.pop()
    elif slice_index is not None:
        index = slice_index
    elif mask is not None:
        index = int(np.argmax(np.moveaxis(mask, axis, 0).reshape(spatial[axis], -1).sum(1)))
    else:
        index = spatial[axis] // 2
    if not 0 <= index < spatial[axis]:
        raise ValueError(f"slice {index} lies outside axis {axis} of {spatial[axis]} voxels.")
    _check_inside(clicks, spatial)
    planar = [[v for d, v in enumerate(c) if d != axis] for c in clicks]
    plane = None if mask is None else np.take(mask, index, axis=axis)
    if plane is not None and not plane.any():
        raise ValueError(f"the mask marks no voxel on slice {index} of axis {axis}, the slice the prompt picks.")
    return SlicePrompt(index, planar[: len(points)], planar[len(points) :], box, plane)


def _check_inside(clicks: list[list[float]], spatial: tuple[int, ...]) -> None:
    for c in clicks:
        if not all(0 <= v <= size - 1 for v, size in zip(c, spatial, strict=True)):
            where = ", ".join(f"{v:g}" for v in c)
            raise ValueError(f"point ({where}) lies outside the image of shape {list(spatial)}.")


def segment(predictor: SlicePredictor, volume: torch.Tensor, prompt: SlicePrompt, axis: int = 2) -> torch.Tensor:
    """Mask logits ``[H, W]`` of the prompted slice. A mask (without clicks or box) is a prior: its logits feed
    the decoder and a click inside it plus its box prompt the structure."""
    if prompt.is_empty:
        raise ValueError("nothing to segment: give a click, a box or a prior mask.")
    predictor.set_image(slice_of(volume, axis, prompt.index))
    args = prompt.as_args()
    prior = args.pop("mask")
    if prior is None:
        return predictor.segment(**args)
    if not prompt.points and prompt.box is None:
        click, box = mask_prompt(prompt.mask)
        args.update(points=[click], box=box)
    return predictor.segment(**args, prev_logits=(prior * 2 - 1) * PRIOR_LOGIT)


def propagate(
    predictor: SlicePredictor,
    volume: torch.Tensor,
    axis: int,
    index: int,
    logits: torch.Tensor,
    *,
    min_voxels: int = 4,
    min_ratio: float = 0.2,
) -> np.ndarray:
    """Carry the segmentation ``logits [H, W]`` of slice ``index`` through the neighbouring slices of ``volume``
    (``[1, X, Y, Z]``) in both directions: each slice is prompted by a click inside the previous slice's mask, its
    (grown) box and its logits. A direction stops where the mask vanishes (fewer than ``min_voxels``) or shrinks
    below ``min_ratio`` of the previous slice's (the structure has ended).

    Returns the ``[X, Y, Z]`` bool mask.
    """
    spatial = tuple(volume.shape[1:])
    out = np.zeros(spatial, bool)
    view = np.moveaxis(out, axis, 0)
    view[index] = (logits > 0).numpy()
    for step in (1, -1):
        previous, k = logits, index + step
        while 0 <= k < spatial[axis]:
            before = (previous > 0).numpy()
            if before.sum() < min_voxels:
                break
            click, box = mask_prompt(before)
            predictor.set_image(slice_of(volume, axis, k))
            prior = torch.from_numpy(before.astype(np.float32)) * 2 - 1  # binary: raw logits drift and bloat
            current = predictor.segment(points=[click], box=box, prev_logits=prior * PRIOR_LOGIT)
            now = (current > 0).numpy()
            if now.sum() < max(min_voxels, min_ratio * before.sum()):
                break
            view[k] = now
            previous, k = current, k + step
    return out


def classify_region(
    predictor: SlicePredictor,
    volume: torch.Tensor,
    prompt: SlicePrompt,
    labels: Sequence[str],
    axis: int = 2,
    region: np.ndarray | None = None,
) -> list[dict]:
    """Rank ``labels`` for the prompted region (no prompt: the whole image). With a 3D ``region`` mask (the
    image's shape) the region is classified on up to :data:`CLASSIFY_SLICES` of its slices and their region
    embeddings averaged."""
    if region is None or volume.ndim == 3:
        predictor.set_image(slice_of(volume, axis, prompt.index))
        return predictor.classify(labels, **prompt.as_args())
    planes = np.moveaxis(region, axis, 0)
    present = np.flatnonzero(planes.reshape(planes.shape[0], -1).any(1))
    picked = present[np.linspace(0, len(present) - 1, min(CLASSIFY_SLICES, len(present))).round().astype(int)]
    embeds = []
    for k in picked:
        predictor.set_image(slice_of(volume, axis, int(k)))
        prompts = predictor.prompts(mask=torch.from_numpy(planes[k].astype(np.float32)))
        embeds.append(predictor.region_embeddings(prompts)[0, 0])
    return predictor.rank_embedding(torch.stack(embeds).mean(0), labels)
