"""MedP-CLIP networks: vision tower, prompt encoder, region fusion, text tower, mask decoder, assembled model."""

from medpclip.networks.factory import (
    MODEL_PRESETS,
    MedPCLIPConfig,
    build_model,
    load_checkpoint,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)
from medpclip.networks.guidance import GuidanceSegmentationNet, guidance_to_prompts
from medpclip.networks.model import ImageEncoding, MedPCLIP
from medpclip.networks.prompt_encoder import PromptEmbeddings, PromptEncoder
from medpclip.networks.prompts import RegionPrompts
from medpclip.networks.vision_tower import MedPCLIPVisionTower, VisualTokens, visual_tokens
from medpclip.networks.weights import ImportReport, import_vision_weights

__all__ = [
    "MODEL_PRESETS",
    "GuidanceSegmentationNet",
    "ImageEncoding",
    "ImportReport",
    "MedPCLIP",
    "MedPCLIPConfig",
    "MedPCLIPVisionTower",
    "PromptEmbeddings",
    "PromptEncoder",
    "RegionPrompts",
    "VisualTokens",
    "build_model",
    "guidance_to_prompts",
    "import_vision_weights",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint",
    "save_checkpoint",
    "visual_tokens",
]
