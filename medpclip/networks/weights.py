"""Import pretrained ViT-B/16 image towers from local files: open_clip / OpenAI-CLIP and timm / BiomedCLIP.

Nothing is downloaded: the user gives a path to a state dict (``.pt``/``.bin``/``.pth`` read with
``weights_only=True``, or ``.safetensors``). Keys are converted to this package's (timm-style) names;
anything that is not part of the image tower is reported, never silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medpclip.networks.model import MedPCLIP

__all__ = ["ImportReport", "read_state_dict", "convert_open_clip_visual", "convert_timm_vit", "import_vision_weights"]

_OPEN_CLIP_RULES = [
    (r"^conv1\.", "patch_embed.proj."),
    (r"^ln_pre\.", "norm_pre."),
    (r"^ln_post\.", "norm."),
    (r"^transformer\.resblocks\.(\d+)\.ln_1\.", r"blocks.\1.norm1."),
    (r"^transformer\.resblocks\.(\d+)\.ln_2\.", r"blocks.\1.norm2."),
    (r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_weight$", r"blocks.\1.attn.qkv.weight"),
    (r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_bias$", r"blocks.\1.attn.qkv.bias"),
    (r"^transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"blocks.\1.mlp.fc1."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"blocks.\1.mlp.fc2."),
]


@dataclass
class ImportReport:
    """What an import did: ``source`` format, number of tower tensors loaded, projection, ignored keys."""

    source: str
    loaded: int
    projection_loaded: bool
    ignored: list[str] = field(default_factory=list)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a local state dict; unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoints."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors.")
    return state


def _strip(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> tuple[dict, list[str]]:
    """Keep keys under the first prefix present (or all keys when none is); return (kept, ignored)."""
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in state):
            kept = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            return kept, [k for k in state if not k.startswith(prefix)]
    return dict(state), []


def convert_open_clip_visual(state: dict[str, torch.Tensor]) -> tuple[dict, torch.Tensor | None, list[str]]:
    """open_clip ``VisionTransformer`` (``visual.*`` or bare) -> (tower state, projection ``[E, D]``, ignored)."""
    visual, ignored = _strip(state, ("visual.",))
    tower, proj = {}, None
    for key, value in visual.items():
        if key == "class_embedding":
            tower["cls_token"] = value.reshape(1, 1, -1)
        elif key == "positional_embedding":
            tower["pos_embed"] = value.unsqueeze(0)
        elif key == "proj":
            proj = value.T  # open_clip computes x @ proj with proj [D, E]
        else:
            for pattern, target in _OPEN_CLIP_RULES:
                if re.match(pattern, key):
                    tower[re.sub(pattern, target, key)] = value
                    break
            else:
                ignored.append(f"visual.{key}")
    return tower, proj, ignored


def convert_timm_vit(state: dict[str, torch.Tensor]) -> tuple[dict, torch.Tensor | None, list[str]]:
    """timm ``VisionTransformer`` (bare, ``trunk.*`` or open_clip's ``visual.trunk.*`` as in BiomedCLIP)
    -> (tower state, projection ``[E, D]`` from ``head.proj`` if present, ignored)."""
    proj = None
    for key in ("visual.head.proj.weight", "head.proj.weight"):
        if key in state:
            proj = state[key]
    trunk, ignored = _strip(state, ("visual.trunk.", "trunk."))
    ignored = [k for k in ignored if not k.endswith("head.proj.weight")]
    tower = {}
    for key, value in trunk.items():
        if key.startswith(("head.", "fc_norm.", "head_drop.")):
            ignored.append(key)  # timm's ImageNet classifier, not part of the image tower
        else:
            tower[key] = value
    return tower, proj, ignored


def import_vision_weights(model: MedPCLIP, source: str | Path | dict[str, torch.Tensor]) -> ImportReport:
    """Load an open_clip or timm ViT image tower (and its projection, if any) into ``model``.

    Raises:
        ValueError: unknown format, or keys/shapes that do not fit the model's vision preset.
    """
    state = read_state_dict(source) if isinstance(source, (str, Path)) else source
    if any(k.endswith("conv1.weight") for k in state):
        fmt, (tower, proj, ignored) = "open_clip", convert_open_clip_visual(state)
    elif any(k.endswith("patch_embed.proj.weight") for k in state):
        fmt, (tower, proj, ignored) = "timm", convert_timm_vit(state)
    else:
        raise ValueError("weights are neither an open_clip nor a timm ViT state dict (no patch embedding found).")
    expected = model.vision.state_dict()
    missing = sorted(set(expected) - set(tower))
    unexpected = sorted(set(tower) - set(expected))
    if missing or unexpected:
        hint = " (ln_pre present: use the 'base-openai' preset)" if "norm_pre.weight" in unexpected else ""
        raise ValueError(
            f"{fmt} weights do not fit vision preset {model.config.get('vision')!r}{hint}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    wrong = [
        f"{k} {list(v.shape)} vs {list(expected[k].shape)}" for k, v in tower.items() if v.shape != expected[k].shape
    ]
    if proj is not None and proj.shape != model.visual_proj.weight.shape:
        wrong.append(f"projection {list(proj.shape)} vs {list(model.visual_proj.weight.shape)}")
    if wrong:
        raise ValueError(f"{fmt} weights have other shapes than the model: {'; '.join(wrong[:5])}.")
    model.vision.load_state_dict(tower)
    if proj is not None:
        with torch.no_grad():
            model.visual_proj.weight.copy_(proj)
    return ImportReport(source=fmt, loaded=len(tower), projection_loaded=proj is not None, ignored=ignored)
