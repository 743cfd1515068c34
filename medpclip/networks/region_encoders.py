"""How a region embedding is made: MedP-CLIP's feature-level fusion and the three baselines.

Every strategy maps ``(vision, images, stream, prompts)`` (``stream``: the prompt-free image pass, see
:class:`~medpclip.networks.vit.ImageStream`) to the normed tokens of the prompt-free image pass
``[B, 1 + N, D]`` and normed region tokens ``[B, P, D]``, so the rest of the model never knows which one runs:

* ``medpclip``: region query tokens read the shared stream at ``fusion_layers`` (:mod:`medpclip.networks.fusion`);
* ``global``: plain CLIP, every region is the whole image;
* ``crop``: the region's bounding box is cropped, resized and encoded on its own;
* ``alpha``: Alpha-CLIP (Sun et al., 2024), the region map enters through a zero-initialised conv added
  to the patch embedding and the whole tower runs once per prompt.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align

from medpclip.networks.fusion import RegionFusionLayer, region_step
from medpclip.networks.prompt_encoder import PromptEmbeddings, mask_boxes
from medpclip.networks.vit import ImageStream, VisionTransformer

__all__ = ["REGION_MODES", "FusionRegions", "GlobalRegions", "CropRegions", "AlphaRegions", "build_region_encoder"]

REGION_MODES = ("medpclip", "global", "crop", "alpha")


class FusionRegions(nn.Module):
    """Feature-level region-prompt integration at ``fusion_layers`` (absolute block indices)."""

    def __init__(
        self, *, width: int, prompt_dim: int, dense_channels: int, fusion_layers: tuple[int, ...], depth: int
    ) -> None:
        super().__init__()
        layers = tuple(sorted(set(fusion_layers)))
        if not layers or layers[0] < 0 or layers[-1] >= depth:
            raise ValueError(f"fusion_layers {fusion_layers} should be non-empty indices in [0, {depth}).")
        self.fusion_layers = layers
        self.first = layers[0]
        self.fusion = nn.ModuleDict({str(i): RegionFusionLayer(width, dense_channels) for i in layers})
        self.sparse_proj = nn.Linear(prompt_dim, width)
        self.sparse_gate = nn.Parameter(torch.zeros(width))

    def forward(
        self, vision: VisionTransformer, images: torch.Tensor, stream: ImageStream, prompts: PromptEmbeddings
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, kvs = stream.tokens, stream.kvs
        p = prompts.num_prompts
        # the region token starts as the [CLS] state entering the first fusion layer (zero gates: region == global)
        region = stream.prefix[:, :1].expand(-1, p, -1) + self.sparse_gate * self.sparse_proj(prompts.sparse_pooled)
        # with rotary positions a region token stands at its region's centre and reads what lies around it
        angles = vision.region_angles(prompts.region_weight)
        for offset, kv in enumerate(kvs):
            index = self.first + offset
            fusion = self.fusion[str(index)] if index in self.fusion_layers else None
            region = region_step(vision.blocks[index], region, kv, prompts.dense, prompts.region_weight, fusion, angles)
        return tokens, vision.norm(region)


class GlobalRegions(nn.Module):
    """Plain CLIP: the region token is the global [CLS] token."""

    def forward(
        self, vision: VisionTransformer, images: torch.Tensor, stream: ImageStream, prompts: PromptEmbeddings
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = stream.tokens
        return tokens, tokens[:, :1].expand(-1, prompts.num_prompts, -1)


class CropRegions(nn.Module):
    """Encode the bounding box of each prompt's region, enlarged by ``margin``, resized to the input size."""

    def __init__(self, margin: float = 0.1) -> None:
        super().__init__()
        self.margin = margin

    def forward(
        self, vision: VisionTransformer, images: torch.Tensor, stream: ImageStream, prompts: PromptEmbeddings
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = stream.tokens
        b, p = prompts.region_map.shape[:2]
        size = images.shape[-1]
        boxes = mask_boxes(prompts.region_map.flatten(0, 1) > 0.5, self.margin)  # [B*P, 4] x0, y0, x1, y1
        batch_index = torch.arange(b, device=images.device).repeat_interleave(p).to(boxes)
        crops = roi_align(images, torch.cat([batch_index[:, None], boxes], 1), size, aligned=True)
        region = vision(crops)[:, 0]
        return tokens, region.unflatten(0, (b, p))


class AlphaRegions(nn.Module):
    """Alpha-CLIP: a zero-initialised patch conv on the region map, added to the patch embedding."""

    def __init__(self, *, width: int, patch_size: int) -> None:
        super().__init__()
        self.alpha_conv = nn.Conv2d(1, width, patch_size, stride=patch_size)
        nn.init.zeros_(self.alpha_conv.weight)
        nn.init.zeros_(self.alpha_conv.bias)

    def forward(
        self, vision: VisionTransformer, images: torch.Tensor, stream: ImageStream, prompts: PromptEmbeddings
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = stream.tokens
        b, p = prompts.region_map.shape[:2]
        alpha = self.alpha_conv(prompts.region_map.flatten(0, 1).unsqueeze(1) * 2 - 1)  # [B*P, D, g, g]
        region = vision(images.repeat_interleave(p, dim=0), extra=alpha)[:, 0]
        return tokens, region.unflatten(0, (b, p))


def build_region_encoder(
    mode: str,
    *,
    width: int,
    prompt_dim: int,
    dense_channels: int,
    fusion_layers: tuple[int, ...],
    depth: int,
    patch_size: int,
) -> nn.Module:
    """Build the strategy named ``mode`` (one of :data:`REGION_MODES`)."""
    if mode == "medpclip":
        return FusionRegions(
            width=width, prompt_dim=prompt_dim, dense_channels=dense_channels, fusion_layers=fusion_layers, depth=depth
        )
    if mode == "global":
        return GlobalRegions()
    if mode == "crop":
        return CropRegions()
    if mode == "alpha":
        return AlphaRegions(width=width, patch_size=patch_size)
    raise ValueError(f"region mode {mode!r} is unknown; choose one of {', '.join(REGION_MODES)}.")
