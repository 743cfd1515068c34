"""Evaluate a checkpoint on a recipe's held-out data (registered or displaced slices)."""

from __future__ import annotations

from pathlib import Path

import torch

from medpclip.atomic import atomic_write_json
from medpclip.engines.training import TrainConfig
from medpclip.engines.validation import Validator
from medpclip.networks import load_checkpoint

__all__ = ["evaluate_checkpoint"]


def evaluate_checkpoint(
    config: str | Path, checkpoint: str | Path, samples: int = 96, displaced: bool = False, out: str | None = None
) -> dict:
    """Metrics of ``checkpoint`` on the validation split of the recipe's datalists (see :class:`Validator`)."""
    recipe = TrainConfig.from_json(config)
    torch.set_num_threads(recipe.threads)
    model = load_checkpoint(checkpoint).eval()
    validator = Validator.from_datalists(
        recipe.val_datalists, recipe.modality_datalist, samples=samples, seed=recipe.seed + 1, displace=displaced
    )
    metrics = {
        "checkpoint": str(checkpoint),
        "region_mode": model.config["region_mode"],
        "displaced": displaced,
        "samples": samples,
        **{k: None if v != v else v for k, v in validator(model).items()},  # NaN (no lateral regions) -> null
    }
    if out:
        atomic_write_json(out, metrics)
    return metrics
