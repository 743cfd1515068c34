"""Pictures of a training run: training curves and region–text similarity heatmaps on validation slices.

Usage: python scripts/plot_results.py --run runs/cpu_tiny [--out docs/images] [--data data/prepared]

The heatmap of a text on an image: a click at every patch centre (all clicks batched as prompts on one image
pass), each click's region embedding compared with the text's prompt-ensemble embedding.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from medpclip.atomic import atomic_write_bytes  # noqa: E402
from medpclip.data import RegionSliceDataset, load_datalist  # noqa: E402
from medpclip.engines.metrics import class_embeddings  # noqa: E402
from medpclip.knowledge import default_knowledge_base  # noqa: E402
from medpclip.networks import RegionPrompts, load_checkpoint  # noqa: E402

CURVES = ["aal3/top1_10way", "aal3/left_right", "modality/accuracy", "lits/dice_3_clicks", "aal3/top1"]
TEXTS = [("Hippocampus_L", "aal3"), ("Hippocampus_R", "aal3"), ("Precentral_L", "aal3"), ("Cerebellum_6_R", "aal3")]


def save(figure: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    print(f"wrote {path}")


def training_curves(run: Path) -> plt.Figure:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for tag in events.Tags()["scalars"]:
        values = torch.tensor([e.value for e in events.Scalars(tag)])
        steps = [e.step for e in events.Scalars(tag)]
        window = 25
        smooth = F.avg_pool1d(values[None, None], window, stride=1).flatten() if len(values) > window else values
        left.plot(steps[len(steps) - len(smooth) :], smooth.numpy(), label=tag)
    left.set(title="training losses (moving average of 25 iterations)", xlabel="iteration")
    left.legend()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for key in CURVES:
        if key in records[0]:
            right.plot([r["iteration"] for r in records], [r[key] for r in records], marker="o", label=key)
    right.set(title="held-out metrics", xlabel="iteration", ylim=(0, 1.02))
    right.legend(fontsize=8)
    return figure


@torch.no_grad()
def similarity_heatmaps(run: Path, data: Path, n_images: int = 3, grid: int = 16) -> plt.Figure:
    model = load_checkpoint(run / "model.pt").eval()
    knowledge = default_knowledge_base()
    items = [i for i in load_datalist(data / "datalist_brain_aal3.json", "validation") if i["axis"] == 2]
    dataset = RegionSliceDataset(items, num_regions=1).set_random_state(3)
    entries = [knowledge.lookup(name, source).id for name, source in TEXTS]
    texts = class_embeddings(model, knowledge, entries, "MR T1")  # [T, E]
    size = model.image_size
    centres = (torch.arange(grid) + 0.5) * size / grid
    clicks = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), -1).view(1, grid * grid, 1, 2)
    figure, axes = plt.subplots(n_images, len(entries) + 1, figsize=(2.6 * (len(entries) + 1), 2.6 * n_images))
    for row in range(n_images):
        image = dataset[row * max(len(dataset) // n_images, 1)]["image"][None]
        enc = model.encode_image(image, RegionPrompts(points=clicks))  # one image pass, grid*grid prompts
        sims = F.normalize(enc.region_embeds[0], dim=-1) @ texts.T  # [grid*grid, T]
        axes[row, 0].imshow(image[0, 0], cmap="gray")
        axes[row, 0].set_title("validation slice", fontsize=8)
        for col, entry in enumerate(entries, start=1):
            heat = F.interpolate(sims[:, col - 1].view(1, 1, grid, grid), size=size, mode="bilinear")[0, 0]
            axes[row, col].imshow(image[0, 0], cmap="gray")
            axes[row, col].imshow(heat, cmap="magma", alpha=0.55)
            axes[row, col].set_title(knowledge[entry].name, fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle("cosine similarity of the region at each click with the text (brighter = more similar)")
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--out", default=Path("docs/images"), type=Path)
    parser.add_argument("--data", default=Path("data/prepared"), type=Path)
    args = parser.parse_args(argv)
    if not (args.run / "model.pt").is_file() or not (args.run / "metrics.jsonl").is_file():
        print(f"plot_results: error: {args.run} has no model.pt and metrics.jsonl (train first)", file=sys.stderr)
        return 2
    save(training_curves(args.run), args.out / f"{args.run.name}_training_curves.png")
    save(similarity_heatmaps(args.run, args.data), args.out / f"{args.run.name}_similarity_heatmaps.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
