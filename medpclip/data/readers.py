"""Image readers MONAI's defaults lack: DICOM files with ``PALETTE COLOR`` pixels.

Ultrasound scanners (and some nuclear medicine and colour-map exports) store frames as palette indices with a
lookup table. ITK expands 16-bit palettes to 16-bit RGB, a pixel type its Python wrapping does not offer, so
``LoadImage`` fails on them; pydicom applies the palette itself (DICOM PS3.3 C.7.6.3.1.5).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import TypeVar

import numpy as np
import pydicom
from monai.data import PydicomReader
from monai.transforms import LoadImage, LoadImaged
from monai.utils import MetaKeys, ensure_tuple
from pydicom.pixel_data_handlers.util import apply_color_lut

__all__ = ["PaletteColourDicomReader", "with_palette_colour"]

Loader = TypeVar("Loader", LoadImage, LoadImaged)


class PaletteColourDicomReader(PydicomReader):
    """A single-frame DICOM file whose PhotometricInterpretation is ``PALETTE COLOR`` -> channel-last RGB float32
    with its axes ordered as ITK orders them (columns first), and the whole header as metadata (the Modality tag
    included). Claims no other file, so ``LoadImage`` passes everything else to its default readers."""

    def __init__(self) -> None:
        super().__init__(channel_dim=-1, swap_ij=True, prune_metadata=False)

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        names = ensure_tuple(filename)  # LoadImage passes a tuple of names
        if len(names) != 1 or not Path(names[0]).is_file():
            return False
        try:
            tags = ["PhotometricInterpretation", "NumberOfFrames"]
            header = pydicom.dcmread(names[0], stop_before_pixels=True, specific_tags=tags)
        except Exception:  # not DICOM, or a damaged file: the default readers report it
            return False
        single_frame = int(header.get("NumberOfFrames", 1) or 1) == 1  # swap_ij would swap frames with rows
        return single_frame and str(header.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR"

    def get_data(self, data) -> tuple[np.ndarray, dict]:
        with warnings.catch_warnings():  # a frame without patient geometry gets the identity affine, as from ITK
            warnings.filterwarnings("ignore", message="PydicomReader: ImageOrientationPatient")
            array, meta = super().get_data(data)
        meta[MetaKeys.SPATIAL_SHAPE] = meta[MetaKeys.SPATIAL_SHAPE][:-1]  # the parent counts the colour axis
        return array, meta

    def _get_array_data(self, img, filename) -> np.ndarray:
        return apply_color_lut(img.pixel_array, img).astype(np.float32)


def with_palette_colour(loader: Loader) -> Loader:
    """``loader`` (built without ``reader=``, so it picks readers by file) with a :class:`PaletteColourDicomReader`
    that it asks first; every other file goes to the reader it would have picked."""
    loader.register(PaletteColourDicomReader())
    return loader
