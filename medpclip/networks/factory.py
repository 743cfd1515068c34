"""Named MedP-CLIP variants and their builder; checkpoints (config + weights) saved atomically."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from medpclip.atomic import atomic_torch_save
from medpclip.networks.mask_decoder import MaskDecoder
from medpclip.networks.model import MedPCLIP
from medpclip.networks.prompt_encoder import PromptEncoder
from medpclip.networks.region_encoders import REGION_MODES, FusionRegions, build_region_encoder
from medpclip.networks.text import TextTower
from medpclip.networks.vit import VIT_PRESETS, VisionTransformer

__all__ = [
    "MedPCLIPConfig",
    "MODEL_PRESETS",
    "build_model",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "medpclip-checkpoint/1"


@dataclass(frozen=True)
class MedPCLIPConfig:
    """Settings of one model; ``vision`` names a preset of :data:`medpclip.networks.vit.VIT_PRESETS`."""

    vision: str = "tiny"
    region_mode: str = "medpclip"
    fusion_layers: tuple[int, ...] = (3, 4, 5)
    embed_dim: int = 256
    prompt_dim: int = 128
    dense_channels: int = 32
    decoder_channels: int = 64
    text_model_dir: str | None = None  # None: the bundled MiniLM
    mask_tokens: bool = False  # mask prompts also give centroid/extent tokens (False in checkpoints made before)
    dense_image: bool = False  # the dense prompt path also reads the image (finer than a patch)
    location_head: bool = False  # a head that says where in its volume a region lies (a training target)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fusion_layers"] = list(self.fusion_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MedPCLIPConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}.")
        d = dict(d)
        if "fusion_layers" in d:
            d["fusion_layers"] = tuple(d["fusion_layers"])
        return cls(**d)


_BASE = MedPCLIPConfig(
    vision="base", fusion_layers=(8, 9, 10, 11), embed_dim=512, prompt_dim=256, decoder_channels=128, mask_tokens=True
)
MODEL_PRESETS: dict[str, MedPCLIPConfig] = {
    "tiny": MedPCLIPConfig(mask_tokens=True),
    "base": _BASE,
    "base-openai": replace(_BASE, vision="base-openai"),
}


def build_model(
    config: MedPCLIPConfig | str = "tiny", *, model_class: type[MedPCLIP] = MedPCLIP, **changes: object
) -> MedPCLIP:
    """Build a model with random weights from a config or a preset name; ``changes`` replace config fields.

    ``model_class`` may be a subclass with another ``forward`` (e.g. :class:`GuidanceSegmentationNet`).
    """
    if isinstance(config, str):
        if config not in MODEL_PRESETS:
            raise ValueError(f"model preset {config!r} is unknown; choose one of {', '.join(MODEL_PRESETS)}.")
        config = MODEL_PRESETS[config]
    config = replace(config, **changes)
    if config.vision not in VIT_PRESETS:
        raise ValueError(f"vision preset {config.vision!r} is unknown; choose one of {', '.join(VIT_PRESETS)}.")
    if config.region_mode not in REGION_MODES:
        raise ValueError(f"region mode {config.region_mode!r} is unknown; choose one of {', '.join(REGION_MODES)}.")
    vit_config = VIT_PRESETS[config.vision]
    if vit_config.spatial_dims != 2:
        raise ValueError("the prompt encoder and mask decoder are 2D: spatial_dims must be 2 (3D volumes are sliced).")
    width = vit_config.width
    region_encoder = build_region_encoder(
        config.region_mode,
        width=width,
        prompt_dim=config.prompt_dim,
        dense_channels=config.dense_channels,
        fusion_layers=config.fusion_layers,
        depth=vit_config.depth,
        patch_size=vit_config.patch_size,
    )
    split = region_encoder.first if isinstance(region_encoder, FusionRegions) else None
    vision = VisionTransformer(vit_config, split=split)
    return model_class(
        vision=vision,
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_dim,
            image_size=vit_config.image_size,
            patch_size=vit_config.patch_size,
            dense_channels=config.dense_channels,
            mask_tokens=config.mask_tokens,
            dense_image=config.dense_image,
        ),
        region_encoder=region_encoder,
        mask_decoder=MaskDecoder(
            width=width,
            prompt_dim=config.prompt_dim,
            dense_channels=config.dense_channels,
            channels=config.decoder_channels,
        ),
        text=TextTower(model_dir=config.text_model_dir, embed_dim=config.embed_dim),
        embed_dim=config.embed_dim,
        location_head=config.location_head,
        config=config.to_dict(),
    )


def save_checkpoint(model: MedPCLIP, path: str | Path, **extra: object) -> Path:
    """Write ``{"format", "config", "state_dict", **extra}`` atomically (temporary file + rename)."""
    payload = {"format": CHECKPOINT_FORMAT, "config": model.config, "state_dict": model.state_dict(), **extra}
    return atomic_torch_save(payload, path)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The ``{"format", "config", "state_dict", ...}`` payload of a :func:`save_checkpoint` file, loaded with
    ``weights_only=True`` (no pickled code runs). A missing, truncated, foreign or damaged file is a one-line
    ``ValueError``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder; give the checkpoint file (e.g. model.pt).")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, pickled code refused by weights_only, not a torch file
        if "Unsupported global" in str(err):  # weights_only refused to rebuild an object (or call code)
            raise ValueError(
                f"cannot load checkpoint {path}: it holds pickled objects or code, which are never run "
                "(weights_only=True); save plain tensors and numbers."
            ) from err
        raise ValueError(
            f"cannot load checkpoint {path} ({type(err).__name__}): truncated or not a weights file."
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a MedP-CLIP checkpoint (no '{CHECKPOINT_FORMAT}' format tag).")
    if not isinstance(payload.get("config"), dict) or not isinstance(payload.get("state_dict"), dict):
        raise ValueError(f"checkpoint {path} is damaged: it lacks its model config or its weights.")
    return payload


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, model_class: type[MedPCLIP] = MedPCLIP
) -> MedPCLIP:
    """Rebuild a model from :func:`save_checkpoint` output (loaded with ``weights_only=True``)."""
    payload = read_checkpoint(path, map_location)
    try:
        model = build_model(MedPCLIPConfig.from_dict(payload["config"]), model_class=model_class)
    except (TypeError, AttributeError, ValueError) as err:  # unknown keys or presets, a size given as text
        raise ValueError(f"checkpoint {path} has an invalid model config: {err}") from err
    _load_state(model, payload["state_dict"], f"checkpoint {path} does not fit its own model configuration")
    return model.to(map_location)


def load_weights(model: MedPCLIP, path: str | Path, map_location: str | torch.device = "cpu") -> MedPCLIP:
    """Load the weights of a :func:`save_checkpoint` file into ``model``, built beforehand (the bundle's
    ``network_def``); a file that does not fit it is a one-line ``ValueError``."""
    payload = read_checkpoint(path, map_location)
    _load_state(model, payload["state_dict"], f"checkpoint {path} does not fit this network")
    return model


def _load_state(model: MedPCLIP, state: dict, problem: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[1:2] or [""]
        raise ValueError(f"{problem}: {first[0].strip()}") from err
