"""Inference: image loading and slice geometry, the interactive slice predictor, slice-wise volumes with
propagation, and the file pipeline of the CLI and the bundle."""

from medpclip.inference.geometry import SquareFit
from medpclip.inference.images import load_image, load_mask, slice_of
from medpclip.inference.pipeline import (
    classify_file,
    classify_volume,
    segment_and_classify,
    segment_file,
    segment_volume,
    write_mask,
)
from medpclip.inference.predictor import SlicePredictor
from medpclip.inference.volume import SlicePrompt, classify_region, mask_prompt, propagate, resolve_prompt, segment

__all__ = [
    "SlicePredictor",
    "SlicePrompt",
    "SquareFit",
    "classify_file",
    "classify_volume",
    "classify_region",
    "load_image",
    "load_mask",
    "mask_prompt",
    "propagate",
    "resolve_prompt",
    "segment",
    "segment_and_classify",
    "segment_file",
    "segment_volume",
    "slice_of",
    "write_mask",
]
