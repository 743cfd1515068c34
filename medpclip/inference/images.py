"""Read an image file the way training did: MONAI ``LoadImage`` (channel first) and modality-aware intensity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from medpclip.data.intensity import ModalityIntensityd
from medpclip.data.slicing import squeeze_singleton_depth

__all__ = ["load_image", "load_mask", "slice_of"]


def load_image(path: str | Path, modality: str | None = None, window: str | None = None) -> MetaTensor:
    """NIfTI, NRRD, DICOM (file or series folder), PNG/JPEG -> ``[1, *spatial]`` in ``[0, 1]`` with its metadata.

    ``modality`` (e.g. ``"CT"``, ``"MR"``) overrides the DICOM tag; CT uses ``window`` (default abdomen).
    """
    path = Path(path)
    image = _read(path, "image")
    if image.shape[0] > 1:  # RGB(A) photographs and screenshots: luminance
        image = image[:3].float().mean(0, keepdim=True)
    image = squeeze_singleton_depth(image)
    if image.ndim not in (3, 4):
        raise ValueError(f"{path} has {image.ndim - 1} spatial dimensions; need a 2D image or a 3D volume.")
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
    array = np.asarray(squeeze_singleton_depth(mask)[0], dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"mask {path} contains NaN or infinite values.")
    return array > 0.5


def _read(path: Path, what: str) -> MetaTensor:
    """``LoadImage`` channel first, with a missing file and any reader failure reported in one line."""
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    try:
        return LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    except Exception as err:  # readers raise many types; the user needs one line
        raise ValueError(
            f"cannot read {path} as {'an' if what == 'image' else 'a'} {what} ({type(err).__name__}: {err})."
        ) from err


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
