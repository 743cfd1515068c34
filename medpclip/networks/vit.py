"""Plain ViT vision tower (timm naming) with a prompt-independent prefix and per-layer keys/values.

The tower is the shared, prompt-free image stream of MedP-CLIP. It exposes
``embed`` (patch + position embedding), ``forward_prefix`` (blocks before the first
fusion layer, cacheable per image) and ``forward_suffix`` (the remaining blocks, which also
return each block's keys/values so the region path can attend to them without recomputing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.networks.layers import Conv, DropPath
from torch import nn

__all__ = [
    "ViTConfig",
    "VIT_PRESETS",
    "Attention",
    "Block",
    "VisionTransformer",
    "rope_angles",
    "rotate",
    "set_stochastic_depth",
]


@dataclass(frozen=True)
class ViTConfig:
    """Literal settings of one vision tower."""

    image_size: int = 224
    patch_size: int = 16
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    in_channels: int = 3
    spatial_dims: int = 2
    pre_norm: bool = False  # OpenAI-CLIP has a LayerNorm ("ln_pre") before the blocks; timm/BiomedCLIP has not
    ln_eps: float = 1e-6  # timm uses 1e-6, open_clip 1e-5: must match imported weights
    patch_bias: bool = True  # OpenAI-CLIP's patch conv has no bias
    rope: bool = False  # rotary positions on the patch grid (relative) instead of a learned absolute embedding

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**self.spatial_dims


VIT_PRESETS: dict[str, ViTConfig] = {
    # CPU demo / CI tower: ~2.7 M parameters, 128 px slices, 8x8 patch grid
    "tiny": ViTConfig(image_size=128, patch_size=16, width=192, depth=6, heads=3),
    # the same tower with rotary (relative) positions: what a token sees depends on where things lie from it
    "tiny-rope": ViTConfig(image_size=128, patch_size=16, width=192, depth=6, heads=3, rope=True),
    # the same tower on a 16x16 grid of 8 px patches: four times the tokens, the same parameters
    "tiny-p8": ViTConfig(image_size=128, patch_size=8, width=192, depth=6, heads=3),
    # ViT-B/16 @224 as in timm `vit_base_patch16_224` (BiomedCLIP's trunk)
    "base": ViTConfig(),
    # ViT-B/16 @224 as in OpenAI CLIP / open_clip `ViT-B-16`
    "base-openai": ViTConfig(pre_norm=True, ln_eps=1e-5, patch_bias=False),
}


def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 100.0) -> torch.Tensor:
    """Angles of 2D rotary position embedding (Su et al., 2021; axial, as Heo et al., 2024): ``positions [..., 2]``
    (row, column, in patches) -> ``[..., head_dim // 2]``, the first half turned by the row, the second by the
    column, at frequencies ``base ** (-k / (head_dim // 4))`` per patch."""
    quarter = head_dim // 4
    freqs = base ** (-torch.arange(quarter, dtype=positions.dtype, device=positions.device) / quarter)
    return torch.cat([positions[..., :1] * freqs, positions[..., 1:] * freqs], -1)


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Turn the pairs ``(x[..., i], x[..., i + d/2])`` of ``x [..., L, d]`` by ``angles [..., L, d/2]`` (broadcast),
    so that a query and a key turned by their positions meet at a logit that depends on their offset only."""
    first, second = x.chunk(2, dim=-1)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm layout: out features = (3, heads, head_dim))."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} should be divisible by heads {heads}.")
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, D] -> [B, heads, L, head_dim]"""
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, heads, L, head_dim] -> [B, L, D]"""
        return x.transpose(1, 2).flatten(2)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Queries only, for tokens that read from the stream without joining it: [B, L, D] -> [B, h, L, d]."""
        dim = self.proj.in_features
        return self.split_heads(F.linear(x, self.qkv.weight[:dim], self.qkv.bias[:dim]))

    def forward(
        self, x: torch.Tensor, angles: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x: [B, L, D], rotary ``angles`` [L, d/2] or None -> (output [B, L, D], (keys, values) each [B, h, L, d];
        the keys turned by ``angles``)."""
        q, k, v = (self.split_heads(t) for t in self.qkv(x).chunk(3, dim=-1))
        if angles is not None:
            q, k = rotate(q, angles), rotate(k, angles)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(self.merge_heads(out)), (k, v)


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm -> attention -> LayerNorm -> GELU MLP)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, ln_eps: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(dim, hidden))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(hidden, dim))
        self.drop_path: nn.Module = nn.Identity()  # stochastic depth while training, see set_stochastic_depth

    def forward(
        self, x: torch.Tensor, angles: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x: [B, L, D] -> (x [B, L, D], (keys, values) of this block's attention, each [B, h, L, d])."""
        attn_out, kv = self.attn(self.norm1(x), angles)
        x = x + self.drop_path(attn_out)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, kv


@dataclass
class ImageStream:
    """The prompt-free pass of ``B`` images, cacheable per image: region tokens read it but never change it.

    Attributes:
        prefix: ``[B, 1 + N, D]`` tokens entering the first suffix block (the first fusion layer).
        tokens: ``[B, 1 + N, D]`` normed output tokens ([CLS] first).
        kvs: per suffix block, its (keys, values), each ``[B, h, 1 + N, d]``.
    """

    prefix: torch.Tensor
    tokens: torch.Tensor
    kvs: list[tuple[torch.Tensor, torch.Tensor]]


class VisionTransformer(nn.Module):
    """ViT with a [CLS] token; ``forward`` returns all tokens after the final LayerNorm.

    Args:
        config: tower settings.
        split: index of the first block that belongs to the suffix (the first fusion layer).
            Blocks ``[0, split)`` form the prompt-independent prefix.
    """

    def __init__(self, config: ViTConfig, split: int | None = None) -> None:
        super().__init__()
        if config.image_size % config.patch_size:
            raise ValueError(f"image_size {config.image_size} should be divisible by patch_size {config.patch_size}.")
        self.config = config
        self.split = config.depth if split is None else split
        if not 0 <= self.split <= config.depth:
            raise ValueError(f"split {self.split} should lie in [0, {config.depth}].")
        dim = config.width
        conv = Conv[Conv.CONV, config.spatial_dims]
        self.patch_embed = nn.Module()
        self.patch_embed.proj = conv(
            config.in_channels, dim, config.patch_size, stride=config.patch_size, bias=config.patch_bias
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if config.rope:
            if config.spatial_dims != 2 or (dim // config.heads) % 4:
                raise ValueError("rotary positions need a 2D tower whose head width is divisible by 4.")
            self.pos_embed = None
            g = torch.arange(config.grid_size, dtype=torch.float32)
            grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).flatten(0, 1)  # [N, 2] row, column
            # the [CLS] token is not turned: it stands nowhere
            angles = torch.cat([torch.zeros(1, dim // config.heads // 2), rope_angles(grid, dim // config.heads)])
        else:
            self.pos_embed = nn.Parameter(torch.randn(1, 1 + config.num_patches, dim) * 0.02)
            grid = angles = None
        self.register_buffer("patch_grid", grid, persistent=False)
        self.register_buffer("rope", angles, persistent=False)
        self.norm_pre = nn.LayerNorm(dim, eps=config.ln_eps) if config.pre_norm else nn.Identity()
        self.blocks = nn.ModuleList(
            Block(dim, config.heads, config.mlp_ratio, config.ln_eps) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=config.ln_eps)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.apply(_init_weights)

    @property
    def width(self) -> int:
        return self.config.width

    def embed(self, images: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """images: [B, C, *spatial]; extra: optional [B, D, *grid] added to the patch embedding
        (Alpha-CLIP's mask channel) -> tokens [B, 1 + N, D]."""
        x = self.patch_embed.proj(images)
        if extra is not None:
            x = x + extra
        x = x.flatten(2).transpose(1, 2)  # [B, N, D]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.norm_pre(x if self.pos_embed is None else x + self.pos_embed)

    def region_angles(self, region_weight: torch.Tensor) -> torch.Tensor | None:
        """Rotary angles ``[B, 1, P, d/2]`` of region tokens that read the stream, each standing at the centre of its
        ``region_weight [B, P, N]`` over the patches; None for a tower with absolute positions."""
        if self.rope is None:
            return None
        centre = region_weight @ self.patch_grid / region_weight.sum(-1, keepdim=True).clamp(min=1e-6)  # [B, P, 2]
        return rope_angles(centre, self.config.width // self.config.heads).unsqueeze(1)

    def forward_prefix(self, images: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Embedding and blocks ``[0, split)``: [B, C, *spatial] -> [B, 1 + N, D]. Never sees a prompt."""
        x = self.embed(images, extra)
        for block in self.blocks[: self.split]:
            x, _ = block(x, self.rope)
        return x

    def forward_suffix(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Blocks ``[split, depth)`` and the final norm: [B, 1 + N, D] ->
        (normed tokens [B, 1 + N, D], per-suffix-block (keys, values) each [B, h, 1 + N, d])."""
        kvs = []
        for block in self.blocks[self.split :]:
            x, kv = block(x, self.rope)
            kvs.append(kv)
        return self.norm(x), kvs

    def forward_stream(self, images: torch.Tensor, extra: torch.Tensor | None = None) -> ImageStream:
        """The whole prompt-free pass, kept for region tokens to read: [B, C, *spatial] -> :class:`ImageStream`."""
        prefix = self.forward_prefix(images, extra)
        tokens, kvs = self.forward_suffix(prefix)
        return ImageStream(prefix, tokens, kvs)

    def forward(self, images: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C, *spatial] -> normed tokens [B, 1 + N, D] ([CLS] first)."""
        return self.forward_suffix(self.forward_prefix(images, extra))[0]


def set_stochastic_depth(tower: VisionTransformer, rate: float) -> None:
    """Stochastic depth (Huang et al., 2016): in training mode each residual branch (attention, MLP) of a block is
    dropped for a whole image, each on its own draw, with a chance rising linearly from 0 at the first block to
    ``rate`` at the last (as DeiT does); a regulariser for a tower that sees one template many times. It has no
    weights, so checkpoints do not change."""
    depth = len(tower.blocks)
    for index, block in enumerate(tower.blocks):
        chance = rate * index / max(depth - 1, 1)
        block.drop_path = DropPath(chance) if chance > 0 else nn.Identity()


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.Conv3d)):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="linear")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
