"""Read an image file the way training did: MONAI ``LoadImage`` (channel first) and modality-aware intensity.

Files are checked before their voxels are read: an image or mask whose header declares more than
:data:`MAX_VOXELS` voxels, or more than three dimensions (a time series), is refused with a one-line
``ValueError`` (headers of NIfTI, NRRD, DICOM files and series folders, PNG/JPEG; other formats are checked once
read). Every reader failure, complex or bool voxels where a grey image is expected, NaN/Inf and images with a
side of one voxel are one-line ``ValueError`` s too; a missing file is a ``FileNotFoundError``.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from medpclip.data.datalists import image_shape
from medpclip.data.intensity import ModalityIntensityd, grey
from medpclip.data.readers import with_palette_colour
from medpclip.data.slicing import squeeze_singleton_depth

__all__ = ["MAX_VOXELS", "MIN_SIDE", "load_image", "load_mask", "slice_of"]

MAX_VOXELS = 512 * 512 * 2048
"""Largest image or mask read: 536,870,912 voxels (a 512 x 512 x 2048 CT, 2 GiB as float32); larger files are
refused from their header, before any voxel is read into memory."""

MIN_SIDE = 2
"""Fewest voxels along every spatial side (a single frame's trailing depth of 1 is dropped first)."""

_HEADER_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".png", ".jpg", ".jpeg")  # formats not read through ITK


def load_image(path: str | Path, modality: str | None = None, window: str | None = None) -> MetaTensor:
    """NIfTI, NRRD, DICOM (file or series folder), PNG/JPEG -> ``[1, *spatial]`` in ``[0, 1]`` with its metadata.

    ``modality`` (e.g. ``"CT"``, ``"MR"``) overrides the DICOM tag; CT uses ``window`` (default abdomen). Colour
    pictures (RGB, RGBA) become their luminance, grey + alpha its grey channel.
    """
    path = Path(path)
    image = _read(path, "image")
    image = grey(image, f"image {path}")
    image = squeeze_singleton_depth(image)
    if image.ndim not in (3, 4):
        raise ValueError(f"{path} has {image.ndim - 1} spatial dimensions; need a 2D image or a 3D volume.")
    _check_sides(image, path, "image")
    data = {"image": image, "modality": modality, "window": window}
    out = ModalityIntensityd(keys="image")({k: v for k, v in data.items() if v is not None})["image"]
    if not torch.isfinite(out).all():
        raise ValueError(f"{path} contains NaN or infinite intensities.")
    return out


def load_mask(path: str | Path) -> np.ndarray:
    """A mask file (any format :func:`load_image` reads) -> bool ``[*spatial]`` (voxels > 0.5)."""
    path = Path(path)
    mask = _read(path, "mask")
    if mask.shape[0] != 1:
        raise ValueError(f"mask {path} has {mask.shape[0]} channels; need one.")
    mask = squeeze_singleton_depth(mask)
    _check_sides(mask, path, "mask")
    return np.asarray(mask[0]) > 0.5


def _read(path: Path, what: str) -> MetaTensor:
    """``LoadImage`` channel first as float32, after a header check; a missing file, a header over the limits,
    any reader failure, complex voxels, a bool image and NaN/Inf are reported in one line."""
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    _check_header(path, what)
    if path.is_dir() or not path.name.lower().endswith(_HEADER_SUFFIXES):
        _quiet_itk()  # ITK prints its warnings (e.g. "No Series were found") straight to stderr
    try:
        data = with_palette_colour(LoadImage(image_only=True, ensure_channel_first=True, dtype=None))(str(path))
    except Exception as err:  # readers raise many types; the user needs one line
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise ValueError(f"cannot read {path} as {'an' if what == 'image' else 'a'} {what} ({reason}).") from err
    if data.is_complex():
        raise ValueError(f"{what} {path} has complex voxels ({data.dtype}); give a real-valued (magnitude) image.")
    if what == "image" and data.dtype == torch.bool:
        raise ValueError(f"image {path} is binary (bool voxels), as a mask is; give the grey image.")
    if data.numel() > MAX_VOXELS:
        raise ValueError(f"{what} {path} has {data.numel():,} voxels, more than the limit of {MAX_VOXELS:,}.")
    data = data.float()
    if not torch.isfinite(data).all():  # before intensity scaling, whose clipping would hide Inf
        raise ValueError(f"{what} {path} contains NaN or infinite {'intensities' if what == 'image' else 'values'}.")
    return data


def _check_header(path: Path, what: str) -> None:
    """Refuse a file whose header declares more than :data:`MAX_VOXELS` voxels or more than 3 dimensions, without
    reading its voxels. A header that cannot be read is left to the reader, which reports it."""
    try:
        shape = image_shape(path)
    except Exception:  # not a format with a header we parse, or a damaged one: LoadImage says which
        return
    if len(shape) > 3:
        raise ValueError(
            f"{what} {path} has {len(shape)} dimensions {list(shape)} (a time series or multi-channel volume); "
            "need a 2D image or a 3D volume."
        )
    voxels = math.prod(shape)
    if voxels > MAX_VOXELS:
        raise ValueError(
            f"{what} {path} has {voxels:,} voxels {list(shape)}, more than the limit of {MAX_VOXELS:,} "
            "(medpclip.inference.images.MAX_VOXELS)."
        )


def _check_sides(image: torch.Tensor, path: Path, what: str) -> None:
    sides = list(image.shape[1:])
    if min(sides) < MIN_SIDE:
        raise ValueError(f"{what} {path} has shape {sides}; need at least {MIN_SIDE} voxels along every side.")


@functools.cache
def _quiet_itk() -> None:
    try:
        import itk

        itk.ProcessObject.SetGlobalWarningDisplay(False)
    except Exception:  # ITK absent or without the flag: its warnings are cosmetic
        pass


def slice_of(image: torch.Tensor, axis: int | None, index: int | None) -> torch.Tensor:
    """``[1, H, W]`` of a 2D image (``axis`` ignored) or slice ``index`` along spatial ``axis`` of a volume."""
    if image.ndim == 3:
        return torch.as_tensor(image)
    if axis not in (0, 1, 2):
        raise ValueError(f"slice axis should be 0, 1 or 2, got {axis}.")
    size = image.shape[1 + axis]
    if index is None or not 0 <= index < size:
        raise ValueError(f"slice {index} lies outside axis {axis} of {size} voxels.")
    return torch.as_tensor(image.select(1 + axis, index))
