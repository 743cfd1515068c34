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
        self._axis: int | None = None
        self._index: int | None = None
        self._neighbour: int | None = None

    def randomize(self, data: Mapping[Hashable, object]) -> None:
        first = squeeze_singleton_depth(data[self.first_key(data)])
        if first.ndim != 4:
            self._axis = self._index = self._neighbour = None
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
        self._axis, self._index = axis, index
        if self.neighbours:
            step = int(self.R.randint(1, self.neighbours + 1)) * int(self.R.choice((-1, 1)))
            self._neighbour = min(max(index + step, 0), size - 1)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize(d)
        d["laterality_visible"] = self._axis is None or self._axis != lateral_axis(d[self.first_key(d)])
        for key in self.key_iterator(d):
            volume = d[key]
            d[key] = self._slice(volume, self._index)
            if self.neighbours and key in self.neighbour_keys:
                d[f"{key}_neighbour"] = self._slice(volume, self._neighbour)
        d["slice_axis"], d["slice_index"] = self._axis, self._index
        return d

    def _slice(self, volume: object, index: int | None) -> torch.Tensor:
        image = torch.as_tensor(np.asarray(volume) if not isinstance(volume, torch.Tensor) else volume)
        image = squeeze_singleton_depth(image)
        if self._axis is not None:
            image = image.select(1 + self._axis, index)
        return image.as_tensor() if hasattr(image, "as_tensor") else image
