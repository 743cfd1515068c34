"""How well a checkpoint's location head says where a region lies, on training and on held-out slabs.

For a checkpoint trained with ``location_weight`` (it has a ``location_head``): the mean absolute error, as a
fraction of the volume's extent, of the predicted centroid of each region prompted by its box, split into depth
(along the slice axis) and the slice's own plane, on slices of the training and validation slabs of one label
datalist, registered and displaced. Depth is what naming a region on a slab never trained on must guess.

    .venv/bin/python scripts/location_errors.py --checkpoint runs/exp_loc/model.pt [--out location.json]
"""

from __future__ import annotations

import argparse
import json

import torch

from medpclip.atomic import atomic_write_json
from medpclip.data import RegionSliceDataset, collate_regions, load_datalist
from medpclip.networks import MedPCLIP, load_checkpoint


def location_errors(model: MedPCLIP, dataset: RegionSliceDataset, samples: int, batch_size: int = 8) -> dict:
    """``{"depth", "in_plane", "depth_if_middle"}`` mean absolute errors over ``samples`` slices of ``dataset`` (drawn
    with locations); ``depth_if_middle``: the error of always answering the middle of the volume, for scale."""
    depth, in_plane, middle = [], [], []
    for start in range(0, samples, batch_size):
        drawn = [dataset[i % len(dataset)] for i in range(start, min(start + batch_size, samples))]
        batch = collate_regions(drawn)
        with torch.inference_mode():
            predicted = model.location_head(model.encode_image(batch.images, batch.prompts("box")).region_embeds)
        for sample, guess, target in zip(drawn, predicted, batch.locations, strict=True):
            known = torch.isfinite(target).all(-1)
            error, axis = (guess - target)[known].abs(), sample["slice_axis"]
            depth.append(error[:, axis])
            in_plane.append(error[:, [a for a in range(3) if a != axis]].flatten())
            middle.append((target[known, axis] - 0.5).abs())
    return {
        name: float(torch.cat(v).mean())
        for name, v in (("depth", depth), ("in_plane", in_plane), ("depth_if_middle", middle))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint trained with location_weight")
    parser.add_argument("--datalist", default="data/prepared/datalist_brain_aal3.json", help="label datalist")
    parser.add_argument("--samples", type=int, default=96, help="slices per split and placement")
    parser.add_argument("--regions", type=int, default=16, help="regions per slice")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", help="JSON file for the report")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_checkpoint(args.checkpoint).eval()
    if model.location_head is None:
        parser.exit(2, f"error: {args.checkpoint} has no location head (train it with location_weight > 0).\n")
    report = {"checkpoint": args.checkpoint, "samples": args.samples, "regions": args.regions, "errors": {}}
    for split in ("training", "validation"):
        items = load_datalist(args.datalist, split)
        for displace in (0.0, 1.0):
            dataset = RegionSliceDataset(
                items, num_regions=args.regions, displace=displace, locations=True, position_guess=False
            ).set_random_state(args.seed)
            name = f"{split}_displaced" if displace else split
            report["errors"][name] = location_errors(model, dataset, args.samples)
            print(name, json.dumps(report["errors"][name]), flush=True)
    if args.out:
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
