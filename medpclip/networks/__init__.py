"""MedP-CLIP networks: vision tower, prompt encoder, region fusion, text tower, mask decoder, assembled model."""

from medpclip.networks.factory import MODEL_PRESETS, MedPCLIPConfig, build_model, load_checkpoint, save_checkpoint
from medpclip.networks.model import ImageEncoding, MedPCLIP
from medpclip.networks.prompt_encoder import PromptEmbeddings, PromptEncoder
from medpclip.networks.prompts import RegionPrompts
from medpclip.networks.weights import ImportReport, import_vision_weights

__all__ = [
    "MODEL_PRESETS",
    "ImageEncoding",
    "ImportReport",
    "MedPCLIP",
    "MedPCLIPConfig",
    "PromptEmbeddings",
    "PromptEncoder",
    "RegionPrompts",
    "build_model",
    "import_vision_weights",
    "load_checkpoint",
    "save_checkpoint",
]
