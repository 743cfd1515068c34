"""Evaluate a checkpoint on held-out data (registered or displaced slices)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from medpclip.atomic import atomic_write_json
from medpclip.engines.validation import Validator
from medpclip.networks import load_checkpoint

__all__ = ["evaluate_checkpoint"]


def evaluate_checkpoint(
    checkpoint: str | Path,
    val_datalists: Sequence[str],
    modality_datalist: str | None = None,
    *,
    samples: int = 96,
    displaced: bool = False,
    split: str = "validation",
    seed: int = 1,
    threads: int = 2,
    modality_views: int = 10,
    modality_draws: int = 10,
    naming_prompt: str = "mask",
    naming_views: int = 1,
    out: str | Path | None = None,
) -> dict:
    """Metrics of ``checkpoint`` on one split of the datalists (``validation``: held out; see :class:`Validator`,
    ``modality_views`` augmented copies of each modality image, ``modality_draws`` draws of each modality item,
    regions named as ``naming_prompt`` prompts them, each from ``naming_views`` views of its slice); also written to
    ``out`` (JSON) when given."""
    torch.set_num_threads(threads)
    model = load_checkpoint(checkpoint).eval()
    validator = Validator.from_datalists(
        val_datalists,
        modality_datalist,
        samples=samples,
        seed=seed,
        displace=displaced,
        image_size=model.image_size,
        split=split,
        modality_views=modality_views,
        modality_draws=modality_draws,
        naming_prompt=naming_prompt,
        naming_views=naming_views,
    )
    metrics = {
        "checkpoint": str(checkpoint),
        "region_mode": model.config["region_mode"],
        "displaced": displaced,
        "split": split,
        "samples": samples,
        "naming_prompt": naming_prompt,
        "naming_views": naming_views,
        **{k: None if v != v else v for k, v in validator(model).items()},  # NaN (no lateral regions) -> null
    }
    if out:
        atomic_write_json(out, metrics)
    return metrics
