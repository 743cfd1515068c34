"""Image values as the model sees them: one grey channel, scaled to ``[0, 1]`` by modality (CT windows per
anatomy, percentile scaling otherwise)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, ScaleIntensityRange, ScaleIntensityRangePercentiles

__all__ = ["CT_WINDOWS", "HU_AIR_BELOW", "MODALITY_CLASSES", "ModalityIntensityd", "grey", "modality_family"]

# (level, width) in Hounsfield units; common radiology presets
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "brain": (40.0, 80.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
}

# image-level zero-shot classes: modality families, named as the knowledge base knows them
HU_AIR_BELOW = -500.0  # no MR, PET or radiograph intensity goes this low; every CT with air or lung in view does

MODALITY_CLASSES = {"CT": "CT", "MR": "MR", "XR": "X-ray", "US": "ultrasound", "NM": "nuclear medicine"}

_FAMILIES = {
    "CT": ("ct", "computed tomography"),
    "MR": ("mr", "mri", "magnetic resonance"),
    "XR": ("cr", "dx", "rg", "xr", "x ray", "xray", "radiograph", "mg", "mammography", "rf", "xa"),
    "US": ("us", "ultrasound"),
    "PET": ("pt", "pet"),
    "NM": ("nm", "spect", "nuclear medicine"),
}


def modality_family(modality: str | None) -> str:
    """``"CT"``, ``"MR"``, ``"XR"``, ``"US"``, ``"PET"``, ``"NM"`` or ``"other"`` from a DICOM code or free text
    (``"MR T1"`` -> ``"MR"``, ``"CR"`` -> ``"XR"``)."""
    if not modality:
        return "other"
    text = modality.strip().lower().replace("-", " ")
    for family, names in _FAMILIES.items():
        if text in names or text.split(" ")[0] in names:
            return family
    return "other"


def grey(image: torch.Tensor, name: str = "the image") -> torch.Tensor:
    """``[C, *spatial]`` -> ``[1, *spatial]``: grey + alpha gives its grey channel, RGB(A) (photographs, colour
    ultrasound, palette images the reader expanded) its luminance; one channel passes through.

    Raises:
        ValueError: for more than 4 channels (the message names the image as ``name``).
    """
    if image.shape[0] == 2:
        return image[:1]
    if image.shape[0] in (3, 4):
        return image[:3].mean(0, keepdim=True)
    if image.shape[0] > 4:
        raise ValueError(f"{name} has {image.shape[0]} channels; need a grey or colour (RGB) image.")
    return image


class ModalityIntensityd(MapTransform):
    """Scale images to ``[0, 1]`` by modality: CT through a window (``d[window_key]`` names one of
    :data:`CT_WINDOWS`, default ``default_window``), every other modality by ``percentiles`` (robust to outliers).

    The modality is ``d[modality_key]`` when present, else the DICOM Modality tag in the image's metadata, else
    CT when the values look like Hounsfield units (air at -1000: minimum <= :data:`HU_AIR_BELOW`). A CT volume
    saved as NIfTI (or converted from DICOM by MONAI Label) has no tag left, and percentile scaling would show the
    model an image unlike the windowed CT it was trained on.
    """

    def __init__(
        self,
        keys: KeysCollection,
        modality_key: str = "modality",
        window_key: str = "window",
        default_window: str = "abdomen",
        percentiles: tuple[float, float] = (0.5, 99.5),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if default_window not in CT_WINDOWS:
            raise ValueError(f"default_window {default_window!r} is not one of {', '.join(CT_WINDOWS)}.")
        self.modality_key = modality_key
        self.window_key = window_key
        self.default_window = default_window
        self.percentiles = ScaleIntensityRangePercentiles(*percentiles, b_min=0.0, b_max=1.0, clip=True)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            modality = d.get(self.modality_key) or _dicom_modality(d[key]) or _hounsfield(d[key])
            if modality_family(modality) == "CT":
                window = d.get(self.window_key) or self.default_window
                if window not in CT_WINDOWS:
                    raise ValueError(f"CT window {window!r} is not one of {', '.join(CT_WINDOWS)}.")
                level, width = CT_WINDOWS[window]
                scale = ScaleIntensityRange(level - width / 2, level + width / 2, 0.0, 1.0, clip=True)
                d[key] = scale(d[key])
            else:
                d[key] = self.percentiles(d[key])
        return d


def _hounsfield(image: torch.Tensor) -> str | None:
    """``"CT"`` when the intensities reach down to air in Hounsfield units, else None."""
    return "CT" if image.numel() and float(image.min()) <= HU_AIR_BELOW else None


def _dicom_modality(image: object) -> str | None:
    meta = getattr(image, "meta", {}) or {}
    for tag in ("0008|0060", "00080060"):  # ITK and pydicom reader spellings
        value = meta.get(tag)
        if value is not None:
            return str(value.get("Value", [value])[0] if isinstance(value, dict) else value).strip()
    return None
