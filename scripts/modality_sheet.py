"""Contact sheet of the image-level modality training images: the real frames of the modality datalist's training
split (its files, not the volume slabs) as the model sees them, then simulated radiographs and ultrasound frames
(medpclip.data.synthetic).

Usage: python scripts/modality_sheet.py [--data data/prepared] [--out docs/images/modality_samples.png]
                                        [--simulated 6] [--seed 0]
(run scripts/prepare_data.py first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from contact_sheet import save_grid  # noqa: E402

from medpclip.data.datalists import load_datalist  # noqa: E402
from medpclip.data.dataset import ImageSliceDataset  # noqa: E402
from medpclip.data.synthetic import SyntheticModalities  # noqa: E402

TILE, CAPTION, SIZE = 192, 20, 128
VOLUMES = ("datalist_brain_aal3.json", "datalist_liver_lits.json")  # what the training recipes simulate from


def tile(image: np.ndarray, caption: str) -> Image.Image:
    """A ``[S, S]`` image in ``[0, 1]`` at :data:`TILE` pixels with a caption underneath."""
    grey = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize((TILE, TILE), Image.BILINEAR)
    out = Image.new("RGB", (TILE, TILE + CAPTION), (0, 0, 0))
    out.paste(grey.convert("RGB"))
    ImageDraw.Draw(out).text((4, TILE + 4), caption[:34], fill=(255, 255, 255))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/prepared", type=Path)
    parser.add_argument("--out", default="docs/images/modality_samples.png", type=Path)
    parser.add_argument("--simulated", type=int, default=6, help="simulated images of each family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = [args.data / "datalist_modalities.json", *(args.data / name for name in VOLUMES)]
    for path in paths:
        if not path.is_file():
            print(f"modality_sheet: error: {path} not found; run scripts/prepare_data.py first", file=sys.stderr)
            return 2
    frames = [i for i in load_datalist(paths[0], "training") if "slices" not in i]  # files, not volume slabs
    dataset = ImageSliceDataset(frames, image_size=SIZE).set_random_state(args.seed)
    rows = [[tile(dataset[k]["image"][0].numpy(), Path(frames[k]["image"]).name) for k in dataset.readable_indices()]]
    synthetic = SyntheticModalities([i for p in paths[1:] for i in load_datalist(p, "training")], seed=args.seed)
    for family in synthetic.FAMILIES:
        rows.append([tile(synthetic(family, SIZE)[0].numpy(), f"simulated {family}") for _ in range(args.simulated)])
    save_grid(rows, args.out)
    print(f"wrote {args.out} ({len(rows[0])} real frames, {args.simulated} simulated images of each family)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
