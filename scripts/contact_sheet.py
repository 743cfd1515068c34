"""Contact sheet of sampled training items: image, region prompt drawn on it, caption.

Usage: python scripts/contact_sheet.py [--data data/prepared] [--out docs/images/data_samples.png] [--seed 0]
[--datalist NAME]... (run scripts/prepare_data.py first). Datalists that differ only in their image (the AAL3 lists of
the evaluation brains) draw the same slices and regions with one seed: one row per brain, the same anatomy.
"""

from __future__ import annotations

import argparse
import io
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from medpclip.atomic import atomic_write_bytes
from medpclip.data.datalists import load_datalist
from medpclip.data.dataset import RegionSliceDataset

TILE, CAPTION = 256, 56
DATALISTS = ("datalist_brain_aal3.json", "datalist_liver_lits.json")  # HCPEx names are not in the knowledge base yet


def draw_tile(sample: dict, region: int) -> Image.Image:
    """One sample's image (x2) with region ``region``: mask outline green, box yellow, clicks red (+) / blue (-)."""
    image = sample["image"][0].numpy()
    scale = TILE / image.shape[0]
    grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, -1)
    mask = sample["region_masks"][region].numpy() > 0.5
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    rgb[edge] = (0, 220, 0)
    tile = Image.new("RGB", (TILE, TILE + CAPTION), (0, 0, 0))
    tile.paste(Image.fromarray(rgb).resize((TILE, TILE), Image.NEAREST))
    draw = ImageDraw.Draw(tile)
    i0, j0, i1, j1 = (v * scale for v in sample["region_boxes"][region].tolist())
    draw.rectangle([j0, i0, j1, i1], outline=(255, 210, 0))
    for (i, j), label in zip(
        sample["region_points"][region].tolist(), sample["region_point_labels"][region].tolist(), strict=True
    ):
        if label >= 0:
            colour = (255, 40, 40) if label == 1 else (60, 120, 255)
            draw.ellipse([j * scale - 4, i * scale - 4, j * scale + 4, i * scale + 4], fill=colour)
    text = "\n".join(textwrap.wrap(sample["region_texts"][region], 40)[:3])
    draw.text((4, TILE + 4), text, fill=(255, 255, 255))
    return tile


def save_grid(rows: list[list[Image.Image]], out: Path) -> None:
    """Tiles of one size, row by row, on black, written to ``out`` as a PNG (atomically)."""
    width, height = rows[0][0].size
    sheet = Image.new("RGB", (max(len(row) for row in rows) * width, len(rows) * height), (0, 0, 0))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet.paste(tile, (c * width, r * height))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write_bytes(out, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/prepared", type=Path)
    parser.add_argument("--out", default="docs/images/data_samples.png", type=Path)
    parser.add_argument("--per-datalist", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datalist", action="append", help=f"datalist in --data, one row each (default: {DATALISTS})")
    args = parser.parse_args(argv)
    tiles = []
    for name in args.datalist or DATALISTS:
        path = args.data / name
        if not path.is_file():
            print(f"contact_sheet: error: {path} not found; run scripts/prepare_data.py first", file=sys.stderr)
            return 2
        dataset = RegionSliceDataset(load_datalist(path), image_size=128, num_regions=1, whole_image_prob=0.1)
        dataset.set_random_state(args.seed)
        rng = np.random.default_rng(args.seed)
        for index in rng.choice(len(dataset), size=args.per_datalist, replace=len(dataset) < args.per_datalist):
            tiles.append(draw_tile(dataset[int(index)], 0))
    columns = args.per_datalist
    save_grid([tiles[k : k + columns] for k in range(0, len(tiles), columns)], args.out)
    print(f"wrote {args.out} ({len(tiles)} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
