"""Inference: image loading and slice geometry, the interactive slice predictor, the bundle's file pipeline."""

from medpclip.inference.geometry import SquareFit
from medpclip.inference.images import load_image, slice_of
from medpclip.inference.pipeline import segment_and_classify
from medpclip.inference.predictor import SlicePredictor

__all__ = ["SlicePredictor", "SquareFit", "load_image", "segment_and_classify", "slice_of"]
