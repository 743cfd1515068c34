"""Data: datalists, MONAI transforms (intensity, slicing, region sampling, captions), datasets, phantoms."""

from medpclip.data.datalists import DatalistError, load_datalist
from medpclip.data.dataset import PROMPT_FORMS, RegionBatch, RegionSliceDataset, collate_regions
from medpclip.data.intensity import ModalityIntensityd
from medpclip.data.regions import RegionCaptionsd, SampleRegionPromptsd, label_parts
from medpclip.data.slicing import SampleSliced

__all__ = [
    "PROMPT_FORMS",
    "DatalistError",
    "ModalityIntensityd",
    "RegionBatch",
    "RegionCaptionsd",
    "RegionSliceDataset",
    "SampleRegionPromptsd",
    "SampleSliced",
    "collate_regions",
    "label_parts",
    "load_datalist",
]
