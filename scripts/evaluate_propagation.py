"""3D liver segmentation on the LiTS case by slice propagation: clicks on one axial slice, the mask carried through
the volume (``medpclip.inference.propagate``), 3D Dice against the reference. Writes a JSON report.

Start slices: the liver's largest axial slice and the slices at 25 %, 50 % and 75 % of its axial extent. Per start,
1 click (the liver voxel farthest from its border, as an annotator would click) and 3 clicks (then two corrective
clicks at the centre of the largest error on that slice, as the evaluation's simulated user does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from tqdm import tqdm

from medpclip.atomic import atomic_write_json
from medpclip.data.intensity import ModalityIntensityd
from medpclip.data.samples import lits_affine, lits_arrays
from medpclip.engines.interaction import next_clicks
from medpclip.inference import SlicePredictor, propagate, slice_of
from medpclip.networks import load_checkpoint
from medpclip.networks.prompts import POSITIVE


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default="bundle/models/model.pt")
    parser.add_argument("--out", default="docs/results/propagation_lits.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ct, label = lits_arrays()
    image = MetaTensor(torch.from_numpy(ct)[None], affine=torch.from_numpy(lits_affine(ct.shape)))
    volume = ModalityIntensityd(keys="image")({"image": image, "modality": "CT"})["image"]
    liver = label > 0
    predictor = SlicePredictor(load_checkpoint(args.checkpoint), modality="CT")
    present = np.flatnonzero(liver.any((0, 1)))
    starts = {"largest": int(np.argmax(liver.sum((0, 1))))}
    for q in (25, 50, 75):
        starts[f"extent_{q}"] = int(present[int(round(q / 100 * (len(present) - 1)))])
    runs = []
    for name, k in tqdm(starts.items(), desc="start slices"):
        target = torch.from_numpy(liver[..., k])
        predictor.set_image(slice_of(volume, 2, k))
        clicks, labels, logits = [], [], None
        for n in range(1, 4):
            pred = torch.zeros_like(target) if logits is None else logits > 0
            point, kind = next_clicks(pred[None], target[None], "center")
            clicks.append(point[0].tolist())
            labels.append(int(kind[0]))
            positives = [c for c, lab in zip(clicks, labels, strict=True) if lab == POSITIVE]
            negatives = [c for c, lab in zip(clicks, labels, strict=True) if lab != POSITIVE]
            logits = predictor.segment(points=positives, negatives=negatives, prev_logits=logits)
            if n in (1, 3):
                mask = propagate(predictor, volume, 2, k, logits)
                runs.append(
                    {
                        "start": name,
                        "slice": k,
                        "clicks": n,
                        "dice_2d_start_slice": round(dice((logits > 0).numpy(), liver[..., k]), 4),
                        "dice_3d": round(dice(mask, liver), 4),
                        "slices_predicted": int(mask.any((0, 1)).sum()),
                        "slices_reference": len(present),
                    }
                )
                predictor.set_image(slice_of(volume, 2, k))  # propagation moved the predictor to other slices
    summary = {
        "checkpoint": args.checkpoint,
        "case": "LiTS 117 (liver incl. tumour), 128^3, axial propagation",
        "mean_dice_3d_1_click": round(float(np.mean([r["dice_3d"] for r in runs if r["clicks"] == 1])), 4),
        "mean_dice_3d_3_clicks": round(float(np.mean([r["dice_3d"] for r in runs if r["clicks"] == 3])), 4),
        "runs": runs,
    }
    atomic_write_json(Path(args.out), summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
