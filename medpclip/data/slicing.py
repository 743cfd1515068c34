"""Sample 2D slices from 3D volumes along any axis, inside the slab a datalist item allows."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

__all__ = ["SampleSliced", "lateral_axis", "squeeze_singleton_depth"]


def lateral_axis(image: object) -> int | None:
    """The spatial voxel axis of a ``[C, X, Y, Z]`` MetaTensor that runs most nearly along world left-right (x in
    RAS and LPS alike); None without a 3D affine."""
    affine = getattr(image, "affine", None)
    if affine is None or tuple(affine.shape) != (4, 4):
        return None
    return int(np.argmax(np.abs(np.asarray(affine[0, :3], dtype=np.float64))))


def squeeze_singleton_depth(image: torch.Tensor) -> torch.Tensor:
    """``[C, H, W, 1]`` (a single DICOM frame as LoadImage returns it) -> ``[C, H, W]``; others unchanged."""
    if image.ndim == 4 and image.shape[-1] == 1:
        return image[..., 0]
    return image


class SampleSliced(Randomizable, MapTransform):
    """Turn ``[C, X, Y, Z]`` volumes into one ``[C, H, W]`` slice, the same slice for every key.

    The axis is ``d[axis_key]`` or, if absent, drawn from ``axes``; the index is ``d[index_key]`` if given
    (deterministic evaluation), else drawn uniformly from ``d[slices_key] = [start, stop)`` (the item's slab),
    else from the whole axis. 2D inputs pass through. Writes ``slice_axis``, ``slice_index`` and
    ``laterality_visible`` into the dict: False for a sagittal slice (cut along the voxel axis that runs most
    nearly left-right in the image's affine), whose pixels cannot tell a left structure from its right twin.
    With ``neighbours > 0``, each of ``neighbour_keys`` also gives ``"<key>_neighbour"``: the slice 1 to
    ``neighbours`` steps away (either side, clipped to the volume; a 2D input is its own neighbour), as slice
    propagation sees the previous slice. Outputs are plain tensors: a slice has no meaningful 3D affine.

    With ``tilt > 0``, that share of randomly drawn slices is cut on a tilted plane instead: the depth along the
    slice axis changes linearly across the slice (up to ``max_tilt`` degrees about either in-plane axis), the keys in
    ``interpolate`` read linearly between the two nearest slices and the others (label maps) from the nearest one.
    A slice seen at a new angle shows cross-sections of the anatomy that no axis-aligned training slice shows. The
    plane is folded flat where it would leave ``d[bounds_key] = [start, stop)`` (default: the item's slab): those
    pixels read the range's first or last slice, so the slice stays continuous and never reaches a validation slice.
    """

    def __init__(
        self,
        keys: KeysCollection,
        axis_key: str = "axis",
        slices_key: str = "slices",
        index_key: str = "slice",
        axes: Sequence[int] = (0, 1, 2),
        neighbours: int = 0,
        neighbour_keys: KeysCollection = (),
        tilt: float = 0.0,
        max_tilt: float = 15.0,
        interpolate: KeysCollection = (),
        bounds_key: str = "tilt_bounds",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if not axes or any(a not in (0, 1, 2) for a in axes):
            raise ValueError(f"axes should be a non-empty subset of (0, 1, 2), got {tuple(axes)}.")
        self.axis_key, self.slices_key, self.index_key = axis_key, slices_key, index_key
        self.axes = tuple(axes)
        if neighbours < 0:
            raise ValueError(f"neighbours should be >= 0, got {neighbours}.")
        self.neighbours = neighbours
        self.neighbour_keys = [neighbour_keys] if isinstance(neighbour_keys, str) else list(neighbour_keys)
        if not 0 <= tilt <= 1 or not 0 <= max_tilt < 90:
            raise ValueError(
                f"tilt should be a chance in [0, 1] and max_tilt in [0, 90) degrees, got {tilt}, {max_tilt}."
            )
        self.tilt, self.max_slope = tilt, float(np.tan(np.radians(max_tilt)))
        self.interpolate = {interpolate} if isinstance(interpolate, str) else set(interpolate)
        self.bounds_key = bounds_key
        self._axis: int | None = None
        self._index: int | None = None
        self._neighbour: int | None = None
        self._slopes: np.ndarray | None = None  # depth change per pixel along the two in-plane axes
        self._bounds: Sequence[int] = (0, 0)  # [start, stop) the tilted plane is folded into

    def randomize(self, data: Mapping[Hashable, object]) -> None:
        first = squeeze_singleton_depth(data[self.first_key(data)])
        if first.ndim != 4:
            self._axis = self._index = self._neighbour = self._slopes = None
            return
        axis = int(data[self.axis_key]) if self.axis_key in data else int(self.R.choice(self.axes))
        if axis not in (0, 1, 2):
            raise ValueError(f"slice axis should be 0, 1 or 2, got {axis}.")
        size = first.shape[1 + axis]
        if self.index_key in data:
            index = int(data[self.index_key])
        else:
            start, stop = data.get(self.slices_key) or (0, size)
            if not 0 <= start < stop <= size:
                raise ValueError(f"slices [{start}, {stop}) do not fit an axis of {size} voxels.")
            index = int(self.R.randint(start, stop))
        if not 0 <= index < size:
            raise ValueError(f"slice index {index} is outside an axis of {size} voxels.")
        self._axis, self._index, self._slopes = axis, index, None
        if self.tilt and self.index_key not in data and self.R.rand() < self.tilt:
            self._slopes = self.R.uniform(-self.max_slope, self.max_slope, size=2)
            self._bounds = data.get(self.bounds_key) or data.get(self.slices_key) or (0, size)
        if self.neighbours:
            step = int(self.R.randint(1, self.neighbours + 1)) * int(self.R.choice((-1, 1)))
            self._neighbour = min(max(index + step, 0), size - 1)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize(d)
        d["laterality_visible"] = self._axis is None or self._axis != lateral_axis(d[self.first_key(d)])
        for key in self.key_iterator(d):
            volume = d[key]
            linear = key in self.interpolate
            d[key] = self._slice(volume, self._index, linear)
            if self.neighbours and key in self.neighbour_keys:
                d[f"{key}_neighbour"] = self._slice(volume, self._neighbour, linear)
        d["slice_axis"], d["slice_index"] = self._axis, self._index
        return d

    def _slice(self, volume: object, index: int | None, linear: bool = False) -> torch.Tensor:
        image = torch.as_tensor(np.asarray(volume) if not isinstance(volume, torch.Tensor) else volume)
        image = squeeze_singleton_depth(image)
        image = image.as_tensor() if hasattr(image, "as_tensor") else image
        if self._axis is None:
            return image
        if self._slopes is None:
            return image.select(1 + self._axis, index)
        return self._tilted(image.movedim(1 + self._axis, -1), index, linear)

    def _tilted(self, volume: torch.Tensor, index: int, linear: bool) -> torch.Tensor:
        """The tilted plane through depth ``index`` of ``volume [C, U, V, D]`` (slice axis last) -> ``[C, U, V]``."""
        channels, u, v, depth = volume.shape
        rows = (torch.arange(u, dtype=torch.float64) - (u - 1) / 2) * float(self._slopes[0])
        cols = (torch.arange(v, dtype=torch.float64) - (v - 1) / 2) * float(self._slopes[1])
        start, stop = self._bounds
        where = (index + rows[:, None] + cols[None, :]).clamp(start, stop - 1)  # [U, V] depth of each pixel

        def read(at: torch.Tensor) -> torch.Tensor:
            return volume.gather(-1, at.expand(channels, u, v)[..., None])[..., 0]

        if not linear:
            return read(where.round().long())
        below = where.floor().long()
        above = (below + 1).clamp(max=depth - 1)
        weight = (where - below).to(volume.dtype)
        return read(below) * (1 - weight) + read(above) * weight
