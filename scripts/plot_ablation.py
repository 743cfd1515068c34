"""Bar chart of the four-way region-mode ablation from its evaluation JSONs (`medpclip evaluate --out`).

Usage: python scripts/plot_ablation.py [--results docs/results] [--out docs/images/ablation_full_budget.png]

One panel for registered and one for displaced slices; a bar per mode and metric, chance as a tick on each metric
and, on displaced slices, the position-only (atlas lookup) left/right as a solid line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from plot_results import save  # noqa: E402 - the sibling script's atomic PNG writer (scripts/ is on sys.path)

# mode -> evaluation JSON stem (the `_displaced` twin holds the displaced figures)
MODES = {
    "medpclip": "cpu_tiny_v8",
    "global": "ablation2000r_global",
    "crop": "ablation2000_crop",
    "alpha": "ablation2000_alpha",
}
# label -> (JSON key, chance key or None)
METRICS = {
    "10-way": ("aal3/top1_10way", "aal3/top1_10way_chance"),
    "top-5/166": ("aal3/top5", "aal3/top5_chance"),
    "left/right": ("aal3/left_right", "aal3/left_right_chance"),
    "R@5": ("aal3/retrieval_r5", "aal3/retrieval_r5_chance"),
    "modality": ("modality/accuracy", "modality/chance"),
    "Dice@3": ("lits/dice_3_clicks", None),
}


def ablation_figure(results: Path) -> plt.Figure:
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.2), sharey=True)
    width = 0.8 / len(MODES)
    for axis, suffix in zip(axes, ["", "_displaced"], strict=True):
        figures = {mode: json.loads((results / f"{stem}{suffix}.json").read_text()) for mode, stem in MODES.items()}
        for i, (mode, values) in enumerate(figures.items()):
            heights = [values[key] for key, _ in METRICS.values()]
            axis.bar([m + (i - (len(MODES) - 1) / 2) * width for m in range(len(METRICS))], heights, width, label=mode)
        reference = next(iter(figures.values()))
        for m, (_, chance_key) in enumerate(METRICS.values()):
            if chance_key and chance_key in reference:
                axis.hlines(reference[chance_key], m - 0.45, m + 0.45, colors="black", linestyles="dotted")
        if "aal3/position_only_left_right" in reference:
            m = list(METRICS).index("left/right")
            axis.hlines(reference["aal3/position_only_left_right"], m - 0.45, m + 0.45, colors="black")
        axis.set_xticks(range(len(METRICS)), list(METRICS))
        axis.set(title=f"{'displaced' if suffix else 'registered'} held-out slices", ylim=(0, 1.05))
    axes[0].set_ylabel("held-out score")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(MODES), bbox_to_anchor=(0.5, -0.06))
    axes[1].text(0.01, 0.97, "dotted: chance; solid: position-only left/right", transform=axes[1].transAxes, va="top")
    figure.suptitle("Region modes at the same data, budget (2,000 iterations) and seed")
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=Path("docs/results"), type=Path)
    parser.add_argument("--out", default=Path("docs/images/ablation_full_budget.png"), type=Path)
    args = parser.parse_args(argv)
    save(ablation_figure(args.results), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
