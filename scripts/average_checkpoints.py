"""Interpolate the weights of two MedP-CLIP checkpoints of one architecture: ``(1 - weight) * first + weight *
second`` (weight-space ensembling of a model and its fine-tuned descendant, WiSE-FT: Wortsman et al., CVPR 2022).

    .venv/bin/python scripts/average_checkpoints.py runs/cpu_tiny/model.pt runs/cpu_tiny_continue_distill/model.pt \
        --weight 0.7 --out runs/cpu_tiny_average/model.pt

Integer buffers (counters, indices) are taken from ``second``. Checkpoints of different architectures exit with
code 2 and one line; the output is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from medpclip.networks import load_checkpoint, save_checkpoint


def interpolate(first: torch.nn.Module, second: torch.nn.Module, weight: float) -> torch.nn.Module:
    """``first`` with every floating-point tensor set to ``(1 - weight) * first + weight * second``."""
    a, b = first.state_dict(), second.state_dict()
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a) or first.config != second.config:
        raise ValueError("the two checkpoints have different architectures; only one model's descendants average.")
    first.load_state_dict({k: torch.lerp(a[k], b[k], weight) if a[k].is_floating_point() else b[k] for k in a})
    return first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--weight", type=float, required=True, help="share of the second checkpoint, 0 to 1")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if not 0 <= args.weight <= 1:
            raise ValueError(f"--weight must be from 0 to 1, got {args.weight}.")
        model = interpolate(load_checkpoint(args.first), load_checkpoint(args.second), args.weight)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"wrote {save_checkpoint(model, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
