"""Interpolate the weights of two MedP-CLIP checkpoints of one architecture: ``(1 - weight) * first + weight *
second`` (weight-space ensembling of a model and its fine-tuned descendant, WiSE-FT: Wortsman et al., CVPR 2022).

    .venv/bin/python scripts/average_checkpoints.py runs/cpu_tiny/model.pt runs/cpu_tiny_continue_distill/model.pt \
        --weight 0.7 --out runs/cpu_tiny_average/model.pt
    .venv/bin/python scripts/average_checkpoints.py runs/cpu_tiny_average/model.pt runs/cpu_tiny_average34/model.pt \
        --weight 1 --part mask_decoder.=0 --out runs/cpu_tiny_v070/model.pt

``--part PREFIX=WEIGHT`` (repeatable) gives the parameters whose names start with ``PREFIX`` their own weight, e.g.
``--weight 1 --part mask_decoder.=0`` takes everything from ``second`` but the mask decoder, which stays ``first``'s.
Integer buffers (counters, indices) are taken from ``second``. Checkpoints of different architectures, a weight
outside 0 to 1 and a prefix that names no parameter exit with code 2 and one line; the output is written
atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from medpclip.networks import load_checkpoint, save_checkpoint


def interpolate(
    first: torch.nn.Module, second: torch.nn.Module, weight: float, parts: dict[str, float] | None = None
) -> torch.nn.Module:
    """``first`` with every floating-point tensor set to ``(1 - w) * first + w * second``, where ``w`` is the weight
    of the longest prefix in ``parts`` that starts the tensor's name, else ``weight``."""
    a, b = first.state_dict(), second.state_dict()
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a) or first.config != second.config:
        raise ValueError("the two checkpoints have different architectures; only one model's descendants average.")
    parts = parts or {}
    for prefix, w in {"--weight": weight, **parts}.items():
        if not 0 <= w <= 1:
            raise ValueError(f"weights must be from 0 to 1, got {w} for {prefix}.")
    if unknown := [p for p in parts if not any(k.startswith(p) for k in a)]:
        raise ValueError(f"no parameter name starts with {', '.join(unknown)}.")

    def weight_of(name: str) -> float:
        matches = [p for p in parts if name.startswith(p)]
        return parts[max(matches, key=len)] if matches else weight

    first.load_state_dict({k: torch.lerp(a[k], b[k], weight_of(k)) if a[k].is_floating_point() else b[k] for k in a})
    return first


def _part(text: str) -> tuple[str, float]:
    prefix, _, weight = text.rpartition("=")
    if not prefix:
        raise argparse.ArgumentTypeError(f"expected PREFIX=WEIGHT, got {text!r}")
    try:
        return prefix, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the weight of {prefix} is not a number: {weight!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--weight", type=float, required=True, help="share of the second checkpoint, 0 to 1")
    parser.add_argument("--part", type=_part, action="append", default=[], metavar="PREFIX=WEIGHT")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        first, second = load_checkpoint(args.first), load_checkpoint(args.second)
        model = interpolate(first, second, args.weight, dict(args.part))
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"wrote {save_checkpoint(model, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
