"""Volumes in the voxel order the model was trained on (RAS: axes toward patient left→right, posterior→anterior,
inferior→superior) and prompts and masks mapped between that order and the file's own.

Every training volume was RAS-ordered, so a slice of an LPS-ordered DICOM series (every CT from a scanner) reached
the model rotated by 180°: on the LiTS liver a click that gave 3D Dice 0.70 on the RAS volume gave 0.09 on the same
volume stored as a DICOM series. Users, viewers and MONAI Label clients speak in the file's voxel indices; the
model works in RAS order; :class:`Reorientation` converts between the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import nibabel.orientations as nio
import numpy as np
import torch

__all__ = ["Reorientation"]


class Reorientation:
    """The axis permutation and flips that take a volume of spatial ``shape`` with ``affine`` (MONAI's RAS world
    affine, ``[4, 4]``) to RAS voxel order. 2D images and images without a 3D affine are left as they are."""

    def __init__(self, shape: Sequence[int], affine: np.ndarray | torch.Tensor | None) -> None:
        self.shape = tuple(int(s) for s in shape)
        affine = None if affine is None else np.asarray(affine, dtype=np.float64)
        ras = nio.axcodes2ornt("RAS")
        if len(self.shape) != 3 or affine is None or affine.shape != (4, 4):
            self.transform = self.inverse = np.array([[d, 1.0] for d in range(len(self.shape))])
        else:
            own = nio.io_orientation(affine)
            self.transform, self.inverse = nio.ornt_transform(own, ras), nio.ornt_transform(ras, own)

    @property
    def is_identity(self) -> bool:
        return all(int(t) == d and f == 1 for d, (t, f) in enumerate(self.transform))

    def axis(self, axis: int) -> int:
        """The RAS axis of the file's voxel ``axis``."""
        return int(self.transform[axis, 0])

    def index(self, point: Sequence[float]) -> list[float]:
        """File voxel indices ``(i, j[, k])`` -> RAS voxel indices."""
        out = [0.0] * len(point)
        for d, value in enumerate(point):
            target, flip = int(self.transform[d, 0]), self.transform[d, 1] < 0
            out[target] = self.shape[d] - 1 - float(value) if flip else float(value)
        return out

    def slice_index(self, axis: int, index: int) -> int:
        """Slice ``index`` along the file's voxel ``axis`` -> its index along the RAS axis."""
        return self.shape[axis] - 1 - index if self.transform[axis, 1] < 0 else index

    def box(self, box: Sequence[float], axis: int) -> list[float]:
        """An in-plane box ``(i0, j0, i1, j1)`` on a slice across the file's voxel ``axis`` -> the same box on the
        RAS slice (corners flipped and, if the in-plane axes swap, swapped)."""
        corners = []
        for i, j in ((box[0], box[1]), (box[2], box[3])):
            point = [i, j]
            point.insert(axis, 0.0)
            mapped = self.index(point)
            del mapped[self.axis(axis)]
            corners.append(mapped)
        (a0, b0), (a1, b1) = corners
        return [min(a0, a1), min(b0, b1), max(a0, a1), max(b0, b1)]

    def array(self, data: np.ndarray) -> np.ndarray:
        """A spatial array of the file's shape -> RAS order."""
        return np.ascontiguousarray(nio.apply_orientation(data, self.transform)) if not self.is_identity else data

    def back(self, data: np.ndarray) -> np.ndarray:
        """A spatial array in RAS order -> the file's voxel order."""
        return np.ascontiguousarray(nio.apply_orientation(data, self.inverse)) if not self.is_identity else data

    def volume(self, image: torch.Tensor) -> torch.Tensor:
        """A channel-first ``[C, *spatial]`` image -> RAS order (a plain tensor; slices need no affine)."""
        if self.is_identity:
            return image
        return torch.stack([torch.from_numpy(self.array(np.asarray(c))) for c in torch.as_tensor(image)])
