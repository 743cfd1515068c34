"""MedP-CLIP: a region-aware medical vision-language model, MONAI-native."""

__version__ = "0.1.0"
