"""Region-prompt integration, the feature-level mechanism of MedP-CLIP.

At each suffix block a region query token per prompt reads the shared image stream with the block's own
weights, like a second [CLS] token, with two prompt-dependent changes at the fusion layers:

* the patch tokens it reads receive the dense prompt map through a zero-initialised gated projection
  (added to their keys and values), and
* its attention logits are biased toward the prompted region by ``scale * (region_weight - 1)``.

The shared stream never reads the region tokens, so the global [CLS] path keeps unrestricted, prompt-free
attention. Because the gated projection is linear it is applied after pooling (``q . (k + Wd) = q.k + (W^T q).d``),
so a prompt costs ``O(N * c)`` per layer instead of ``O(N * D)`` and many prompts share one image pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medpclip.networks.vit import Block, rotate

__all__ = ["RegionFusionLayer", "region_step"]


class RegionFusionLayer(nn.Module):
    """Prompt parameters of one fusion layer.

    Args:
        width: token width ``D``.
        dense_channels: channels ``c`` of the dense prompt map.
        bias_scale: initial strength of the region attention bias (logits outside the region drop by it).
    """

    def __init__(self, width: int, dense_channels: int, bias_scale: float = 8.0) -> None:
        super().__init__()
        self.key_proj = nn.Parameter(torch.randn(dense_channels, width) * dense_channels**-0.5)
        self.value_proj = nn.Parameter(torch.randn(dense_channels, width) * dense_channels**-0.5)
        self.key_gate = nn.Parameter(torch.zeros(width))
        self.value_gate = nn.Parameter(torch.zeros(width))
        self.bias_scale = nn.Parameter(torch.tensor(float(bias_scale)))


def region_step(
    block: Block,
    region: torch.Tensor,
    kv: tuple[torch.Tensor, torch.Tensor],
    dense: torch.Tensor,
    region_weight: torch.Tensor,
    fusion: RegionFusionLayer | None,
    angles: torch.Tensor | None = None,
) -> torch.Tensor:
    """Advance region tokens through one block.

    Args:
        block: the vision block whose weights the region path shares.
        region: ``[B, P, D]`` region tokens entering the block.
        kv: keys and values of the shared stream in this block, each ``[B, h, 1 + N, d]``.
        dense: ``[B, P, N, c]`` dense prompt map.
        region_weight: ``[B, P, N]`` in ``[0, 1]``.
        fusion: the layer's prompt parameters, or ``None`` for a plain (non-fusion) suffix block.
        angles: ``[B, 1, P, d/2]`` rotary angles of the region tokens (a tower with rotary positions), or ``None``.

    Returns:
        ``[B, P, D]`` region tokens leaving the block.
    """
    attn = block.attn
    heads, head_dim = attn.heads, attn.head_dim
    keys, values = kv
    q = attn.query(block.norm1(region))  # [B, h, P, d]
    if angles is not None:
        q = rotate(q, angles)
    logits = q @ keys.transpose(-1, -2)  # [B, h, P, 1 + N]
    if fusion is not None:
        key_map = (fusion.key_proj * fusion.key_gate).view(-1, heads, head_dim)  # [c, h, d]
        q_dense = torch.einsum("bhpd,chd->bhpc", q, key_map)
        patch_logits = torch.einsum("bhpc,bpnc->bhpn", q_dense, dense)  # q . (gated projection of dense)
        logits = logits + F.pad(patch_logits, (1, 0))  # the [CLS] column gets no prompt term
    logits = logits * head_dim**-0.5
    if fusion is not None:
        bias = fusion.bias_scale * (region_weight - 1)  # [B, P, N], 0 inside the region
        logits = logits + F.pad(bias, (1, 0)).unsqueeze(1)
    probs = logits.softmax(-1)
    out = probs @ values  # [B, h, P, d]
    if fusion is not None:
        value_map = (fusion.value_proj * fusion.value_gate).view(-1, heads, head_dim)
        pooled_dense = torch.einsum("bhpn,bpnc->bhpc", probs[..., 1:], dense)
        out = out + torch.einsum("bhpc,chd->bhpd", pooled_dense, value_map)
    region = region + attn.proj(attn.merge_heads(out))
    return region + block.mlp(block.norm2(region))
