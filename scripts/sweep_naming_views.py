"""Name held-out regions from several moved views of their slice under a few settings of the views' number and
ranges (medpclip.inference.views), registered and displaced: how the shipped settings were chosen.

    .venv/bin/python scripts/sweep_naming_views.py --checkpoint bundle/models/model.pt \
        --datalist data/prepared/datalist_brain_aal3_fsl_mni152.json --out docs/results/session31/views_sweep_fsl.json
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

import medpclip.inference.views as views
from medpclip.atomic import atomic_write_json
from medpclip.engines.evaluation import evaluate_checkpoint

# (views, max rotation in degrees, max scale and shift as fractions); the first: the slice alone
SETTINGS = [
    (1, 0.0, 0.0),
    (8, 2.0, 0.015),
    (8, 4.0, 0.03),
    (8, 8.0, 0.05),
    (8, 12.0, 0.08),
    (8, 16.0, 0.1),
    (16, 4.0, 0.03),
    (16, 8.0, 0.05),
    (16, 12.0, 0.08),
    (32, 12.0, 0.08),
    (32, 16.0, 0.1),
]
FIGURES = ("top1_10way", "top1", "left_right")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--datalist", required=True, help="label datalist whose validation split is named")
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--out", required=True, help="JSON file: one row per setting")
    args = parser.parse_args(argv)
    rows = []
    for n, rotation, move in tqdm(SETTINGS, desc="settings", unit="setting"):
        views.MAX_ROTATION, views.MAX_SCALE, views.MAX_SHIFT = rotation, move, move
        row = {"views": n, "max_rotation": rotation, "max_scale": move, "max_shift": move}
        for displaced in (False, True):
            metrics = evaluate_checkpoint(
                args.checkpoint, [args.datalist], samples=args.samples, displaced=displaced, seed=1, naming_views=n
            )
            for figure in FIGURES:
                value = next(v for k, v in metrics.items() if k.endswith(f"/{figure}"))
                row[f"{figure}{'_displaced' if displaced else ''}"] = value
        rows.append(row)
        print(row, flush=True)
    atomic_write_json(args.out, {"checkpoint": args.checkpoint, "datalist": args.datalist, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
