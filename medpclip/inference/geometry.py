"""How an ``H x W`` slice maps into the model's ``S x S`` input and back (as in training: the longest side
resized to ``S`` with area interpolation, then centred zero padding, as MONAI ``Resized(size_mode="longest")``
followed by ``SpatialPadd``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.transforms import Compose, Resize, SpatialPad

__all__ = ["SquareFit"]


@dataclass(frozen=True)
class SquareFit:
    """Geometry of one slice of ``height x width`` voxels placed into a ``size x size`` model input."""

    height: int
    width: int
    size: int

    @property
    def resized(self) -> tuple[int, int]:
        scale = self.size / max(self.height, self.width)
        return max(int(round(self.height * scale)), 1), max(int(round(self.width * scale)), 1)

    @property
    def offset(self) -> tuple[int, int]:
        h, w = self.resized
        return (self.size - h) // 2, (self.size - w) // 2

    def image(self, slice_: torch.Tensor, mode: str = "area") -> torch.Tensor:
        """``[C, H, W]`` -> ``[C, S, S]`` (``mode="nearest"`` for masks), with the transforms training uses."""
        fit = Compose([Resize(self.size, size_mode="longest", mode=mode), SpatialPad((self.size, self.size))])
        return torch.as_tensor(fit(slice_.float()))

    def points(self, ij: torch.Tensor) -> torch.Tensor:
        """``[..., 2]`` voxel ``(i, j)`` of the slice -> the same voxels in the model input."""
        (h, w), (top, left) = self.resized, self.offset
        scale = torch.tensor([h / self.height, w / self.width])
        shift = torch.tensor([float(top), float(left)])
        return ((ij.float() + 0.5) * scale - 0.5 + shift).clamp(0, self.size - 1)

    def logits_back(self, logits: torch.Tensor) -> torch.Tensor:
        """``[..., s, s]`` logits over the model input (any ``s``) -> ``[..., H, W]`` over the slice."""
        s = logits.shape[-1]
        (h, w), (top, left) = self.resized, self.offset
        f = s / self.size
        crop = logits[..., round(top * f) : round((top + h) * f), round(left * f) : round((left + w) * f)]
        lead = crop.shape[:-2]
        out = F.interpolate(crop.reshape(-1, 1, *crop.shape[-2:]), size=(self.height, self.width), mode="bilinear")
        return out.reshape(*lead, self.height, self.width)
