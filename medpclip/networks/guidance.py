"""Tensor-in, tensor-out MedP-CLIP for MONAI Bundle tools (``verify_net_in_out``, TorchScript export, inferers).

The input follows MONAI's Deepgrow/DeepEdit convention: the image plus one positive and one negative guidance
channel that are non-zero at the clicked voxels. The clicks become point prompts (at most ``max_clicks`` of each
kind, strongest guidance first) with a fixed shape, so the whole forward traces to TorchScript.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medpclip.networks.model import MedPCLIP
from medpclip.networks.prompts import NEGATIVE, PADDING, POSITIVE, RegionPrompts

__all__ = ["GuidanceSegmentationNet", "guidance_to_prompts"]


def guidance_to_prompts(guidance: torch.Tensor, max_clicks: int) -> RegionPrompts:
    """``[B, 2, H, W]`` positive/negative guidance -> one prompt per image with ``2 * max_clicks`` points.

    Voxels with guidance ``> 0`` are clicks; unused slots are padding (ignored by the prompt encoder), so an
    all-zero guidance means "no click" and the prompt covers the whole image.
    """
    b, _, h, w = guidance.shape
    k = min(max_clicks, h * w)
    values, index = guidance.flatten(2).topk(k, dim=-1)  # [B, 2, K]
    points = torch.stack([torch.div(index, w, rounding_mode="floor"), index % w], dim=-1).float()  # [B, 2, K, 2]
    kind = torch.tensor([POSITIVE, NEGATIVE], device=guidance.device).view(1, 2, 1)
    labels = torch.where(values > 0, kind, torch.full_like(kind, PADDING))
    return RegionPrompts(points=points.reshape(b, 1, 2 * k, 2), point_labels=labels.reshape(b, 1, 2 * k))


class GuidanceSegmentationNet(MedPCLIP):
    """MedP-CLIP whose ``forward`` maps ``[B, 3, H, W]`` (image, positive guidance, negative guidance) to mask
    logits ``[B, 1, H, W]``. Same parameters and ``state_dict`` as :class:`MedPCLIP`, so one checkpoint loads
    into both; build it with ``build_model(..., model_class=GuidanceSegmentationNet)``."""

    max_clicks: int = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"input should be [B, 3, H, W] (image, positive, negative guidance), got {list(x.shape)}.")
        encoding = self.encode_image(x[:, :1], guidance_to_prompts(x[:, 1:], self.max_clicks))
        logits = self.decode_masks(encoding)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
