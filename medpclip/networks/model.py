"""The assembled MedP-CLIP model: image + optional region prompts -> global, region and patch features, masks."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from medpclip.networks.mask_decoder import MaskDecoder
from medpclip.networks.prompt_encoder import PromptEmbeddings, PromptEncoder
from medpclip.networks.prompts import RegionPrompts
from medpclip.networks.region_encoders import FusionRegions
from medpclip.networks.text import TextTower
from medpclip.networks.vit import ImageStream, VisionTransformer

__all__ = ["ImageEncoding", "MedPCLIP"]


@dataclass
class ImageEncoding:
    """Outputs of :meth:`MedPCLIP.encode_image` for ``B`` images and ``P`` prompts each.

    Attributes:
        global_embeds: ``[B, E]`` whole-image embedding in the joint space (unnormalised, as open_clip).
        region_embeds: ``[B, P, E]`` one embedding per prompt in the same space.
        patch_tokens: ``[B, N, D]`` prompt-free patch tokens after the final norm.
        region_tokens: ``[B, P, D]`` normed region tokens (mask decoder input).
        prompts: the encoded prompts.
        global_token: ``[B, D]`` the normed class token (the global embedding before projection).
    """

    global_embeds: torch.Tensor
    region_embeds: torch.Tensor
    patch_tokens: torch.Tensor
    region_tokens: torch.Tensor
    prompts: PromptEmbeddings
    global_token: torch.Tensor | None = None

    def take(self, indices: torch.Tensor) -> ImageEncoding:
        """The same encoding restricted to the prompts at positions ``indices`` of every image."""
        return replace(
            self,
            region_embeds=self.region_embeds[:, indices],
            region_tokens=self.region_tokens[:, indices],
            prompts=self.prompts.take(indices),
        )


class MedPCLIP(nn.Module):
    """Region-aware CLIP composed from its towers (see :func:`medpclip.networks.factory.build_model`).

    Args:
        vision: the shared image tower; its ``split`` marks the prompt-independent prefix.
        prompt_encoder: encodes :class:`RegionPrompts`.
        region_encoder: the region strategy (``medpclip`` fusion or a baseline).
        mask_decoder: mask logits from patch + region tokens.
        text: text tower.
        embed_dim: joint embedding width ``E``.
        location_head: add :attr:`location_head`, ``[..., E] -> [..., 3]``: where in its volume a region embedding's
            region lies (fractions of the volume's extent), trained as an auxiliary target; inference ignores it.
        config: the settings the model was built from, kept for checkpoints.
    """

    def __init__(
        self,
        *,
        vision: VisionTransformer,
        prompt_encoder: PromptEncoder,
        region_encoder: nn.Module,
        mask_decoder: MaskDecoder,
        text: TextTower,
        embed_dim: int,
        location_head: bool = False,
        config: dict | None = None,
    ) -> None:
        super().__init__()
        if isinstance(region_encoder, FusionRegions) and region_encoder.first != vision.split:
            raise ValueError(f"vision split {vision.split} should equal the first fusion layer {region_encoder.first}.")
        self.vision = vision
        self.prompt_encoder = prompt_encoder
        self.region_encoder = region_encoder
        self.mask_decoder = mask_decoder
        self.text = text
        self.visual_proj = nn.Linear(vision.width, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(2.6593))  # log(1 / 0.07), as CLIP
        hidden = embed_dim // 2
        head = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, 3)) if location_head else None
        self.location_head = head
        self.config = config or {}

    @property
    def image_size(self) -> int:
        return self.vision.config.image_size

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        """Check ``[B, C, H, W]`` images and repeat single-channel ones to the tower's channels."""
        cfg = self.vision.config
        if images.ndim != 2 + cfg.spatial_dims:
            raise ValueError(f"images should have shape [B, C, H, W], got {list(images.shape)}.")
        if tuple(images.shape[2:]) != (cfg.image_size,) * cfg.spatial_dims:
            size = f"{cfg.image_size}x{cfg.image_size}"
            raise ValueError(f"images should be {size} pixels, got {list(images.shape[2:])}; resize first.")
        if images.shape[1] == 1 and cfg.in_channels > 1:
            images = images.expand(-1, cfg.in_channels, *images.shape[2:])
        if images.shape[1] != cfg.in_channels:
            raise ValueError(f"images should have 1 or {cfg.in_channels} channels, got {images.shape[1]}.")
        if not torch.isfinite(images).all():
            raise ValueError("image contains NaN or infinite values.")
        return images.to(self.visual_proj.weight)

    def encode_prefix(self, images: torch.Tensor) -> ImageStream:
        """The prompt-independent image pass, cacheable per image: ``[B, C, H, W]`` -> :class:`ImageStream` (every
        block of the shared stream: prompts only add region tokens that read it, so a further click skips it)."""
        return self.vision.forward_stream(self.prepare_images(images))

    def encode_image(
        self, images: torch.Tensor, prompts: RegionPrompts | None = None, *, prefix: ImageStream | None = None
    ) -> ImageEncoding:
        """Encode images with optional region prompts (``None`` = one whole-image prompt per image).

        Args:
            images: ``[B, C, H, W]``, ``C`` 1 or the tower's channels.
            prompts: region prompts with ``P`` prompts per image.
            prefix: a cached :meth:`encode_prefix` of the same images, to skip the image pass.
        """
        images = self.prepare_images(images)
        encoded = self.prompt_encoder(prompts, images.shape[0], images)
        if prefix is None:
            prefix = self.vision.forward_stream(images)
        tokens, region = self.region_encoder(self.vision, images, prefix, encoded)
        return ImageEncoding(
            global_embeds=self.visual_proj(tokens[:, 0]),
            region_embeds=self.visual_proj(region),
            patch_tokens=tokens[:, 1:],
            region_tokens=region,
            prompts=encoded,
            global_token=tokens[:, 0],
        )

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``T`` strings -> unnormalised text embeddings ``[T, E]``."""
        return self.text(texts)

    def decode_masks(self, encoding: ImageEncoding, prev_mask_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Mask logits ``[B, P, H/4, W/4]``; ``prev_mask_logits [B, P, h, w]`` refines an earlier prediction."""
        return self.mask_decoder(encoding.patch_tokens, encoding.region_tokens, encoding.prompts, prev_mask_logits)

    def similarity(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """Scaled cosine logits ``[..., T]`` between ``[..., E]`` image/region and ``[T, E]`` text embeddings."""
        scale = self.logit_scale.exp().clamp(max=100)
        return scale * F.normalize(image_embeds, dim=-1) @ F.normalize(text_embeds, dim=-1).T

    def forward(
        self,
        images: torch.Tensor,
        prompts: RegionPrompts | None = None,
        prev_mask_logits: torch.Tensor | None = None,
    ) -> tuple[ImageEncoding, torch.Tensor]:
        """Encode and decode in one call: -> (encoding, mask logits ``[B, P, H/4, W/4]``)."""
        encoding = self.encode_image(images, prompts)
        return encoding, self.decode_masks(encoding, prev_mask_logits)
