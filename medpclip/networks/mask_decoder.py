"""Lightweight mask decoder: upsampled patch features, modulated per prompt, read out by a hypernetwork.

Logits come out at 1/4 of the input resolution (patch 16 -> two x2 transposed convs -> x4 grid). The prompt
raster and the previous prediction enter at that resolution, so a refinement click lands where it was made.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medpclip.networks.prompt_encoder import RASTER_CHANNELS, PromptEmbeddings

__all__ = ["MaskDecoder"]


class MaskDecoder(nn.Module):
    """Args:
    width: token width ``D`` of the vision tower.
    prompt_dim: sparse prompt width ``Dp``.
    dense_channels: dense prompt channels ``c``.
    channels: decoder channels ``C`` at the patch grid (``C // 4`` at the output).
    """

    def __init__(self, *, width: int, prompt_dim: int, dense_channels: int, channels: int = 64) -> None:
        super().__init__()
        if channels % 4:
            raise ValueError(f"decoder channels {channels} should be divisible by 4.")
        out = channels // 4
        self.image_proj = nn.Conv2d(width, channels, 1)
        self.dense_proj = nn.Conv2d(dense_channels, channels, 1)
        self.upscale = nn.Sequential(
            nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
            nn.GroupNorm(1, channels // 2),
            nn.GELU(),
            nn.ConvTranspose2d(channels // 2, out, 2, stride=2),
            nn.GELU(),
        )
        # prompt raster + previous-mask probability + "has previous mask" flag, at the output resolution
        self.detail = nn.Conv2d(RASTER_CHANNELS + 2, out, 3, padding=1)
        self.hyper = nn.Sequential(nn.Linear(width + prompt_dim, width), nn.GELU(), nn.Linear(width, out))

    def forward(
        self,
        patch_tokens: torch.Tensor,
        region_tokens: torch.Tensor,
        prompts: PromptEmbeddings,
        prev_mask_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            patch_tokens: ``[B, N, D]`` prompt-free patch tokens (``N = g*g``).
            region_tokens: ``[B, P, D]`` normed region tokens.
            prompts: encoded prompts (dense map, raster, pooled sparse tokens).
            prev_mask_logits: optional ``[B, P, h, w]`` previous prediction (any resolution) for refinement.

        Returns:
            mask logits ``[B, P, 4g, 4g]``.
        """
        b, n, d = patch_tokens.shape
        p = region_tokens.shape[1]
        g = math.isqrt(int(n))  # int(): shapes are tensors while tracing
        image = self.image_proj(patch_tokens.transpose(1, 2).reshape(b, d, g, g))  # [B, C, g, g]
        dense = prompts.dense.transpose(2, 3).reshape(b * p, -1, g, g)  # [B*P, c, g, g]
        x = image.repeat_interleave(p, dim=0) + self.dense_proj(dense)
        x = self.upscale(x)  # [B*P, C/4, 4g, 4g]
        size = x.shape[-2:]
        raster = prompts.raster.flatten(0, 1)  # [B*P, 4, 4g, 4g]: already on this grid
        if prev_mask_logits is None:
            prev = torch.zeros(b * p, 2, *size, device=x.device)
        else:
            prob = F.interpolate(prev_mask_logits.flatten(0, 1).unsqueeze(1).float(), size=size, mode="bilinear")
            prev = torch.cat([prob.sigmoid(), torch.ones_like(prob)], 1)
        x = x + self.detail(torch.cat([raster, prev], 1))
        weights = self.hyper(torch.cat([region_tokens, prompts.sparse_pooled], -1)).flatten(0, 1)  # [B*P, C/4]
        logits = torch.einsum("mchw,mc->mhw", x, weights)
        return logits.unflatten(0, (b, p))
