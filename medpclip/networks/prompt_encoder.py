"""Prompt encoder: points, boxes and masks -> sparse tokens, a dense map on the patch grid and a region map.

Sparse tokens follow SAM (Kirillov et al., 2023): a random-Fourier positional code plus learned
positive/negative/corner type embeddings. Every prompt form is also rasterised (Gaussian blobs for
points, a filled box, the mask) and a small strided conv turns the raster into a dense map on the
patch grid, so that any combination of prompts reaches the vision tower through the same path.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from medpclip.networks.prompts import NEGATIVE, PADDING, POSITIVE, RegionPrompts

__all__ = ["PromptEmbeddings", "PromptEncoder", "mask_boxes"]

RASTER_CHANNELS = 4  # positive-point heat, negative-point heat, box, mask


@dataclass
class PromptEmbeddings:
    """Encoded prompts for ``B`` images with ``P`` prompts each (``N = g*g`` patches, image ``H x W``).

    Attributes:
        sparse: ``[B, P, T, Dp]`` point and box-corner tokens (``T`` may be 0).
        sparse_valid: ``[B, P, T]`` bool, False for padding points.
        sparse_pooled: ``[B, P, Dp]`` mean of the valid sparse tokens, a learned embedding when there are none.
        dense: ``[B, P, N, c]`` dense prompt map on the patch grid.
        raster: ``[B, P, 4, 4g, 4g]`` positive heat, negative heat, box and mask channels, area-averaged onto four
            times the patch grid (the dense path's input and the mask decoder's output resolution).
        region_map: ``[B, P, H, W]`` in ``[0, 1]``: where the prompted region is (all ones = whole image).
        region_weight: ``[B, P, N]`` the region map's coverage per patch, 1 for the best-covered patch.
    """

    sparse: torch.Tensor
    sparse_valid: torch.Tensor
    sparse_pooled: torch.Tensor
    dense: torch.Tensor
    raster: torch.Tensor
    region_map: torch.Tensor
    region_weight: torch.Tensor

    @property
    def num_prompts(self) -> int:
        return self.dense.shape[1]

    def take(self, indices: torch.Tensor) -> PromptEmbeddings:
        """The prompts at positions ``indices`` (``P'`` of them) of every image: every field is ``[B, P, ...]``."""
        return PromptEmbeddings(**{f.name: getattr(self, f.name)[:, indices] for f in fields(self)})


class PromptEncoder(nn.Module):
    """Encode :class:`RegionPrompts` for a 2D image of ``image_size``.

    Args:
        embed_dim: sparse token width ``Dp``.
        image_size: side of the (square) input image in pixels.
        patch_size: ViT patch size; the dense map lives on the ``image_size // patch_size`` grid.
        dense_channels: channels ``c`` of the dense map.
        point_sigma: Gaussian radius of a point in the raster, in pixels (default: half a patch).
        mask_tokens: a mask prompt also gives sparse tokens: its centroid and the corners of its extent, so that the
            region token knows the mask's position finer than the patch grid.
        dense_image: the dense path also reads the image (channel mean, area-averaged like the raster), so that where
            a mask lies against an edge inside one patch, e.g. on which side of the midline, reaches the region token.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        image_size: int,
        patch_size: int,
        dense_channels: int,
        point_sigma: float | None = None,
        mask_tokens: bool = False,
        dense_image: bool = False,
    ) -> None:
        super().__init__()
        if embed_dim % 2:
            raise ValueError(f"embed_dim {embed_dim} should be even for the Fourier code.")
        self.image_size = image_size
        self.patch_size = patch_size
        self.grid = image_size // patch_size
        self.point_sigma = point_sigma or patch_size / 2
        self.dense_image = dense_image
        self.register_buffer("fourier", torch.randn(2, embed_dim // 2), persistent=True)
        self.point_embed = nn.Embedding(2, embed_dim)  # index 0 negative, 1 positive
        self.not_a_point = nn.Parameter(torch.zeros(embed_dim))
        self.corner_embed = nn.Embedding(2, embed_dim)
        # type embeddings of a mask's centroid and extent corners (only models built with mask_tokens have them)
        self.mask_embed = nn.Embedding(3, embed_dim) if mask_tokens else None
        self.no_sparse_embed = nn.Parameter(torch.zeros(embed_dim))
        self.no_prompt_dense = nn.Parameter(torch.zeros(dense_channels))
        # the dense map carries where each patch is (as SAM's image_pe), so a pooled region knows its position
        self.dense_pos = nn.Linear(embed_dim, dense_channels)
        half = max(dense_channels // 2, 1)
        # raster is resampled to 4x the patch grid, then two stride-2 convs reach the patch grid (as SAM's mask path)
        self.dense_net = nn.Sequential(
            nn.Conv2d(RASTER_CHANNELS + int(dense_image), half, 2, stride=2),
            nn.GELU(),
            nn.Conv2d(half, dense_channels, 2, stride=2),
            nn.GELU(),
            nn.Conv2d(dense_channels, dense_channels, 1),
        )

    def positional_code(self, coords: torch.Tensor) -> torch.Tensor:
        """coords: ``[..., 2]`` voxel ``(i, j)`` -> ``[..., Dp]`` random-Fourier code."""
        unit = (coords + 0.5) / self.image_size * 2 - 1
        angles = 2 * math.pi * unit @ self.fourier
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    def patch_position(self) -> torch.Tensor:
        """Projected positional code of every patch centre: ``[N, c]``."""
        centres = torch.arange(self.grid, device=self.fourier.device) * self.patch_size + (self.patch_size - 1) / 2
        grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), -1).flatten(0, 1)  # [N, 2] (i, j)
        return self.dense_pos(self.positional_code(grid))

    def forward(
        self, prompts: RegionPrompts | None, batch: int, images: torch.Tensor | None = None
    ) -> PromptEmbeddings:
        """``None`` (or empty prompts) means one whole-image prompt per image; ``images [B, C, H, W]`` are needed
        by an encoder built with ``dense_image``."""
        size, device = self.image_size, self.fourier.device
        if prompts is None or prompts.is_empty:
            return self._whole_image(batch)
        prompts.validate(batch, (size, size))
        prompts = prompts.to(device)
        b, p = prompts.batch_shape
        sparse, valid = self._sparse(prompts, b, p)
        raster, region_map = self._raster(prompts, b, p)
        dense_input = raster
        if self.dense_image:
            if images is None:
                raise ValueError("this prompt encoder reads the image (dense_image): pass the images.")
            image = F.interpolate(images.mean(1, keepdim=True), size=raster.shape[-1], mode="area")  # [B, 1, 4g, 4g]
            dense_input = torch.cat([raster, image.unsqueeze(1).expand(-1, p, -1, -1, -1).to(raster)], 2)
        dense = self.dense_net(dense_input.flatten(0, 1)).flatten(2).transpose(1, 2).unflatten(0, (b, p))
        dense = dense + self.patch_position()  # [B, P, N, c]
        # coverage per patch, relative to the best-covered patch: a structure smaller than a patch still gets weight 1
        weight = F.avg_pool2d(region_map, self.patch_size).flatten(2)
        weight = weight / weight.amax(-1, keepdim=True).clamp(min=1e-6)
        return PromptEmbeddings(sparse, valid, self._pool(sparse, valid), dense, raster, region_map, weight)

    def _whole_image(self, batch: int) -> PromptEmbeddings:
        size, dp, device = self.image_size, self.no_sparse_embed.numel(), self.fourier.device
        n = self.grid * self.grid
        return PromptEmbeddings(
            sparse=torch.zeros(batch, 1, 0, dp, device=device),
            sparse_valid=torch.zeros(batch, 1, 0, dtype=torch.bool, device=device),
            sparse_pooled=self.no_sparse_embed.expand(batch, 1, dp),
            dense=(self.no_prompt_dense + self.patch_position()).expand(batch, 1, n, -1),
            raster=torch.zeros(batch, 1, RASTER_CHANNELS, 4 * self.grid, 4 * self.grid, device=device),
            region_map=torch.ones(batch, 1, size, size, device=device),
            region_weight=torch.ones(batch, 1, n, device=device),
        )

    def _sparse(self, prompts: RegionPrompts, b: int, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.fourier.device
        tokens, valid = [], []
        if prompts.points is not None:
            points, labels = prompts.points.float(), prompts.point_labels
            is_pad = labels == PADDING
            tok = self.positional_code(points) + self.point_embed(labels.clamp(min=0))
            tokens.append(torch.where(is_pad[..., None], self.not_a_point.expand_as(tok), tok))
            valid.append(~is_pad)
        if prompts.boxes is not None:
            corners = prompts.boxes.float().unflatten(-1, (2, 2))  # [B, P, 2, 2]
            tokens.append(self.positional_code(corners) + self.corner_embed.weight)
            valid.append(torch.ones(b, p, 2, dtype=torch.bool, device=device))
        if prompts.masks is not None and self.mask_embed is not None:
            summary, present = _mask_summary(prompts.masks > 0.5)  # [B, P, 3, 2], [B, P]
            tokens.append(self.positional_code(summary) + self.mask_embed.weight)
            valid.append(present[..., None].expand(-1, -1, 3))
        if not tokens:
            dp = self.no_sparse_embed.numel()
            return torch.zeros(b, p, 0, dp, device=device), torch.zeros(b, p, 0, dtype=torch.bool, device=device)
        return torch.cat(tokens, dim=2), torch.cat(valid, dim=2)

    def _pool(self, sparse: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        weights = valid.float().unsqueeze(-1)
        count = weights.sum(2)
        mean = (sparse * weights).sum(2) / count.clamp(min=1)
        return torch.where(count > 0, mean, self.no_sparse_embed)

    def _raster(self, prompts: RegionPrompts, b: int, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (raster ``[B, P, 4, 4g, 4g]``: positive heat, negative heat, box fill and mask, each area-averaged
        onto four times the patch grid; region map ``[B, P, H, W]``: the union of the positive channels, or the
        whole image when there are none, with the negative heat carved out).

        Only the channels a prompt has are drawn at full resolution (absent ones are zero on the small grid)."""
        size, device = self.image_size, self.fourier.device
        axis = torch.arange(size, dtype=torch.float32, device=device)
        channels: list[torch.Tensor | None] = [None] * RASTER_CHANNELS
        if prompts.points is not None and prompts.points.shape[2]:
            pts, labels = prompts.points.float(), prompts.point_labels
            # a Gaussian is separable: K x (H + W) exponentials instead of K x H x W
            scale = -1 / (2 * self.point_sigma**2)
            rows = torch.exp((axis - pts[..., 0, None]) ** 2 * scale)  # [B, P, K, H]
            cols = torch.exp((axis - pts[..., 1, None]) ** 2 * scale)  # [B, P, K, W]
            for channel, label in ((0, POSITIVE), (1, NEGATIVE)):
                keep = (labels == label)[..., None].float()
                channels[channel] = ((rows * keep)[..., :, None] * cols[..., None, :]).amax(2)
        if prompts.boxes is not None:
            i0, j0, i1, j1 = (c.float()[..., None] for c in prompts.boxes.unbind(-1))
            rows = (axis >= i0) & (axis <= i1)  # [B, P, H]
            cols = (axis >= j0) & (axis <= j1)  # [B, P, W]
            channels[2] = (rows[..., :, None] & cols[..., None, :]).float()
        if prompts.masks is not None:
            channels[3] = prompts.masks.float()
        small = 4 * self.grid
        raster = torch.zeros(b, p, RASTER_CHANNELS, small, small, device=device)
        for k, channel in enumerate(channels):
            if channel is not None:
                raster[:, :, k] = F.interpolate(channel, size=small, mode="area")
        present = [c for k, c in enumerate(channels) if c is not None and k != 1]
        positive = functools.reduce(torch.maximum, present) if present else torch.zeros(b, p, size, size, device=device)
        has_positive = positive.flatten(2).amax(-1) > 0
        region_map = positive.masked_fill(~has_positive[..., None, None], 1.0)
        if channels[1] is not None:
            region_map = region_map * (1 - channels[1])
        return raster, region_map


def _mask_summary(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, P, H, W]`` bool -> (centroid, first and last row/column ``[B, P, 3, 2]`` as ``(i, j)``, non-empty
    ``[B, P]``)."""
    h, w = masks.shape[-2:]
    i = torch.arange(h, device=masks.device, dtype=torch.float32)
    j = torch.arange(w, device=masks.device, dtype=torch.float32)
    per_row = masks.float().sum(-1)  # [B, P, H] voxels in each row (exact integers)
    per_col = masks.float().sum(-2)  # [B, P, W]
    area = per_row.sum(-1)
    centroid = torch.stack([(per_row * i).sum(-1), (per_col * j).sum(-1)], -1) / area.clamp(min=1)[..., None]
    first = torch.stack([_first(per_row > 0), _first(per_col > 0)], -1)
    last = torch.stack([h - 1 - _first((per_row > 0).flip(-1)), w - 1 - _first((per_col > 0).flip(-1))], -1)
    present = area > 0
    # an empty mask spans the whole image, as mask_boxes has it
    first = torch.where(present[..., None], first, torch.zeros_like(first))
    last = torch.where(present[..., None], last, torch.tensor([h - 1.0, w - 1.0], device=masks.device))
    return torch.stack([centroid, first, last], 2), present


def _first(hit: torch.Tensor) -> torch.Tensor:
    """Index of the first True along the last dimension (0 where there is none), as float."""
    return hit.float().argmax(-1).float()


def mask_boxes(masks: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """masks: ``[M, H, W]`` bool -> ``[M, 4]`` ``(x0, y0, x1, y1)`` pixel-edge boxes, enlarged by ``margin`` of
    their size and clipped to the image; an empty mask gives the whole image."""
    _, h, w = masks.shape

    def extent(hit: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(size, device=hit.device).expand_as(hit)
        found = hit.any(1)
        lo = torch.where(found, torch.where(hit, index, size).amin(1), 0)
        hi = torch.where(found, torch.where(hit, index, -1).amax(1) + 1, size)
        pad = (hi - lo) * margin
        return (lo - pad).clamp(min=0), (hi + pad).clamp(max=size)

    y0, y1 = extent(masks.any(2), h)
    x0, x1 = extent(masks.any(1), w)
    return torch.stack([x0, y0, x1, y1], 1).float()
