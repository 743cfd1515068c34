"""Optimiser parameter groups for MedP-CLIP.

Zero-initialised gates start closed and, with Adam, open by about one learning rate per step; they get a
larger rate (and no weight decay, which would pull them shut) so the prompt path opens within tens of steps,
while a (pretrained) vision tower moves slower than the new prompt modules. The `alpha` baseline's zero-initialised
alpha conv has a group of its own so that it can be given the larger rate Alpha-CLIP gives it.
"""

from __future__ import annotations

from torch import nn

__all__ = ["parameter_groups"]


def parameter_groups(
    model: nn.Module,
    lr: float,
    *,
    vision_scale: float = 0.1,
    gate_scale: float = 30.0,
    alpha_scale: float = 1.0,
    weight_decay: float = 0.05,
) -> list[dict]:
    """Split trainable parameters into vision / gate / alpha conv / other groups for ``torch.optim.AdamW``."""
    groups = {
        "vision": {"params": [], "lr": lr * vision_scale, "weight_decay": weight_decay},
        "gates": {"params": [], "lr": lr * gate_scale, "weight_decay": 0.0},
        "alpha_conv": {"params": [], "lr": lr * alpha_scale, "weight_decay": weight_decay},
        "other": {"params": [], "lr": lr, "weight_decay": weight_decay},
    }
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith("gate"):
            groups["gates"]["params"].append(param)
        elif ".alpha_conv." in name:
            groups["alpha_conv"]["params"].append(param)
        elif name.startswith("vision."):
            groups["vision"]["params"].append(param)
        else:
            groups["other"]["params"].append(param)
    return [dict(group, name=name) for name, group in groups.items() if group["params"]]
