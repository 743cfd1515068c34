"""MedP-CLIP as the vision tower of a multimodal LLM (LLaVA-style): visual tokens for the language model.

Tokens per image, in this order: the global token, one token per region prompt (the whole image when no prompt is
given), and the patch tokens; all ``[.., D]`` in the vision tower's width before any projection, so ``B`` images
with ``P`` prompts give ``[B, 1 + P + N, D]`` (``N`` patches; ``1 + 1 + 64`` for the ``tiny`` preset).

Two ways to use it:

* :func:`visual_tokens` returns the three groups (optionally through a projector to the LLM's hidden size).
* :class:`MedPCLIPVisionTower` replaces the ``vision_tower`` of a ``transformers`` LLaVA model: it is called as
  ``vision_tower(pixel_values, return_dict=True)`` and answers with ``hidden_states`` like a CLIP vision model.
  Build the LLaVA config with ``vision_config.hidden_size = D``, ``vision_feature_layer = -1`` and
  ``vision_feature_select_strategy = "full"`` (keep the global token), and ``image_seq_length = 1 + P + N``; the
  model's ``multi_modal_projector`` then maps the tokens to the LLM. Region prompts are set on the tower before the
  forward (``tower.prompts = RegionPrompts(...)``), since LLaVA passes only pixels. See docs/model.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from medpclip.networks.model import MedPCLIP
from medpclip.networks.prompts import RegionPrompts

__all__ = ["MedPCLIPVisionTower", "VisualTokens", "visual_tokens"]


@dataclass
class VisualTokens:
    """``global_token [B, 1, H]``, ``region_tokens [B, P, H]``, ``patch_tokens [B, N, H]`` (``H``: the vision width
    ``D``, or the projector's output size)."""

    global_token: torch.Tensor
    region_tokens: torch.Tensor
    patch_tokens: torch.Tensor

    def sequence(self) -> torch.Tensor:
        """``[B, 1 + P + N, H]``: global, region and patch tokens in one sequence."""
        return torch.cat([self.global_token, self.region_tokens, self.patch_tokens], dim=1)


def visual_tokens(
    model: MedPCLIP,
    images: torch.Tensor,
    prompts: RegionPrompts | None = None,
    projector: nn.Module | None = None,
) -> VisualTokens:
    """Visual tokens of ``images [B, C, S, S]`` (``C`` 1 or 3) with optional region ``prompts``; ``projector``
    (e.g. ``nn.Linear(D, hidden)``) is applied to every token. Gradients flow unless the caller freezes the model."""
    encoding = model.encode_image(images, prompts)
    tokens = VisualTokens(encoding.global_token[:, None], encoding.region_tokens, encoding.patch_tokens)
    if projector is None:
        return tokens
    return VisualTokens(*(projector(t) for t in (tokens.global_token, tokens.region_tokens, tokens.patch_tokens)))


class MedPCLIPVisionTower(nn.Module):
    """A drop-in ``vision_tower`` for ``transformers`` LLaVA models (see the module docstring).

    Args:
        model: a MedP-CLIP model (e.g. :func:`medpclip.networks.load_checkpoint` of a trained one).
        freeze: keep the MedP-CLIP weights frozen (the usual LLaVA stage-1 setting: only the projector trains).
    """

    def __init__(self, model: MedPCLIP, freeze: bool = True) -> None:
        super().__init__()
        self.model = model
        self.prompts: RegionPrompts | None = None
        self.hidden_size = model.vision.width
        if freeze:
            self.model.requires_grad_(False)

    def num_tokens(self, prompts_per_image: int = 1) -> int:
        """``1 + P + N``: the number of image placeholder tokens the language model needs per image."""
        patches = (self.model.image_size // self.model.vision.config.patch_size) ** 2
        return 1 + prompts_per_image + patches

    def forward(self, pixel_values: torch.Tensor, **_: object) -> BaseModelOutputWithPooling:
        """``pixel_values [B, C, S, S]`` -> tokens ``[B, 1 + P + N, D]`` as ``last_hidden_state`` and the last
        entry of ``hidden_states``. LLaVA's keyword arguments (``return_dict``, ``output_hidden_states``) are
        accepted and ignored."""
        tokens = visual_tokens(self.model, pixel_values, self.prompts).sequence()
        return BaseModelOutputWithPooling(last_hidden_state=tokens, hidden_states=(tokens,), pooler_output=tokens[:, 0])
