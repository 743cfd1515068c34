"""Name held-out regions on slices moved by each part of the evaluation's displacement alone (rotation, scale,
shift), two together and all three, beside the registered slices: which part of the move costs naming.

    .venv/bin/python scripts/displacement_parts.py --checkpoint bundle/models/model.pt \
        --datalist data/prepared/datalist_brain_aal3_whole.json --out docs/results/session32/displacement_parts.json

Each row is one ``medpclip evaluate`` run of the datalist's validation split (the same slices and regions, seed 1)
with the other parts of the move set to zero; the position-only baseline (an atlas lookup under the moved mask)
comes with every displaced row.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

import medpclip.data.dataset as dataset
from medpclip.atomic import atomic_write_json
from medpclip.engines.evaluation import evaluate_checkpoint

PARTS = {  # which of (rotation, scale, shift) each row keeps; None: registered slices
    "registered": None,
    "rotation": (True, False, False),
    "scale": (False, True, False),
    "shift": (False, False, True),
    "rotation+scale": (True, True, False),
    "all": (True, True, True),
}
FIGURES = ("top1_10way", "top1", "left_right", "position_only_top1", "position_only_left_right")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--datalist", required=True, help="label datalist whose validation split is named")
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--naming-views", type=int, default=1)
    parser.add_argument("--out", required=True, help="JSON file: one row per part")
    args = parser.parse_args(argv)
    if args.samples < 1 or args.naming_views < 1:
        parser.error("--samples and --naming-views must be whole numbers >= 1.")
    full = (dataset.DISPLACE_ROTATION, dataset.DISPLACE_SCALE, dataset.DISPLACE_SHIFT)
    rows = []
    try:
        for name, kept in tqdm(PARTS.items(), desc="parts", unit="part"):
            ranges = tuple(r if k else 0.0 for r, k in zip(full, kept or (False,) * 3, strict=True))
            dataset.DISPLACE_ROTATION, dataset.DISPLACE_SCALE, dataset.DISPLACE_SHIFT = ranges
            metrics = evaluate_checkpoint(
                args.checkpoint,
                [args.datalist],
                samples=args.samples,
                displaced=kept is not None,
                seed=1,
                naming_views=args.naming_views,
            )
            row = {"part": name, "rotation": ranges[0], "scale": ranges[1], "shift": ranges[2]}
            row |= {f: next((v for k, v in metrics.items() if k.endswith(f"/{f}")), None) for f in FIGURES}
            rows.append(row)
            print(row, flush=True)
    finally:
        dataset.DISPLACE_ROTATION, dataset.DISPLACE_SCALE, dataset.DISPLACE_SHIFT = full
    out = {"checkpoint": args.checkpoint, "datalist": args.datalist, "naming_views": args.naming_views, "rows": rows}
    atomic_write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
