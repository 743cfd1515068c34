"""Pictures of a training run: training curves and region–text similarity heatmaps on validation slices.

Usage: python scripts/plot_results.py --run runs/cpu_tiny [runs/stage_two ...] [--checkpoint model.pt]
                                      [--name NAME] [--out docs/images] [--data data/prepared]

Several runs are stages of one model (each started from the one before): their curves follow each other on one
iteration axis, a dashed line at each new stage. The heatmaps show ``--checkpoint`` (default: the last run's
``model.pt``, e.g. a weight average of the stages), the files are named after ``--name`` (default: the last run).

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

BRAIN_CURVES = ("top1_10way", "left_right", "top1")  # of each AAL3 datalist: the template's slabs, or Colin27
CURVES = ("modality/accuracy", "lits/dice_3_clicks")
SMOOTHING = 25  # iterations in the moving average of the training losses
TEXTS = [("Hippocampus_L", "aal3"), ("Hippocampus_R", "aal3"), ("Precentral_L", "aal3"), ("Cerebellum_6_R", "aal3")]


def save(figure: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    print(f"wrote {path}")


def training_curves(runs: list[Path]) -> plt.Figure:
    """Training losses (left) and logged held-out metrics (right) of consecutive ``runs`` on one iteration axis."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    offset, colours = 0, {}
    for stage, run in enumerate(runs):
        events = EventAccumulator(str(run / "tensorboard"))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            values = torch.tensor([e.value for e in events.Scalars(tag)])
            steps = [offset + e.step for e in events.Scalars(tag)]
            if len(values) > SMOOTHING:
                values = F.avg_pool1d(values[None, None], SMOOTHING, stride=1).flatten()
            _plot(left, colours, tag, steps[len(steps) - len(values) :], values.numpy())
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for key in curve_keys(records[0]):
            _plot(right, colours, key, [offset + r["iteration"] for r in records], [r[key] for r in records], "o")
        if stage:
            for axis in (left, right):
                axis.axvline(offset, color="grey", linestyle="--", linewidth=0.8)
        offset += records[-1]["iteration"]
    left.set(title=f"training losses (moving average of {SMOOTHING} iterations)", xlabel="iteration")
    left.legend()
    right.set(title="held-out metrics", xlabel="iteration", ylim=(0, 1.02))
    right.legend(fontsize=8)
    return figure


def curve_keys(record: dict) -> list[str]:
    """The logged metrics of ``record`` that the right panel shows, AAL3 naming first."""
    brain = [k for k in record if k.startswith("aal3") and k.split("/", 1)[-1] in BRAIN_CURVES]
    return brain + [k for k in CURVES if k in record]


def _plot(axis: plt.Axes, colours: dict[str, str], label: str, x: list, y: object, marker: str | None = None) -> None:
    """One stage of one curve, in the colour its first stage got and labelled once."""
    (line,) = axis.plot(x, y, marker=marker, color=colours.get(label), label=None if label in colours else label)
    colours.setdefault(label, line.get_color())


@torch.no_grad()
def similarity_heatmaps(checkpoint: Path, data: Path, n_images: int = 3, grid: int = 16) -> plt.Figure:
    model = load_checkpoint(checkpoint).eval()
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
    parser.add_argument("--run", required=True, type=Path, nargs="+", help="one run, or its stages in order")
    parser.add_argument("--checkpoint", type=Path, help="model of the heatmaps (default: the last run's model.pt)")
    parser.add_argument("--name", help="file name prefix (default: the last run's folder name)")
    parser.add_argument("--out", default=Path("docs/images"), type=Path)
    parser.add_argument("--data", default=Path("data/prepared"), type=Path)
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint or args.run[-1] / "model.pt"
    for run in args.run:
        if not (run / "metrics.jsonl").is_file():
            print(f"plot_results: error: {run} has no metrics.jsonl (train first)", file=sys.stderr)
            return 2
    if not checkpoint.is_file():
        print(f"plot_results: error: no checkpoint {checkpoint}", file=sys.stderr)
        return 2
    name = args.name or args.run[-1].name
    save(training_curves(args.run), args.out / f"{name}_training_curves.png")
    save(similarity_heatmaps(checkpoint, args.data), args.out / f"{name}_similarity_heatmaps.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
