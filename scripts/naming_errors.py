"""Which held-out regions a checkpoint names wrongly, and whether averaging several checkpoints helps.

For each label datalist of a recipe: the region metrics of ``medpclip evaluate`` for each checkpoint and, given
several, for their ensemble (similarities averaged); then, for the first checkpoint or the ensemble, the classes
most often missed (not among the five best of all classes) and every left/right error with its region size.

    .venv/bin/python scripts/naming_errors.py --config configs/cpu_tiny.json \\
        --checkpoint bundle/models/model.pt [--checkpoint other.pt ...] [--displaced] [--out errors.json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace

import torch

from medpclip.atomic import atomic_write_json
from medpclip.engines.metrics import RegionScores, region_scores, summarise_regions
from medpclip.engines.training import TrainConfig
from medpclip.engines.validation import Validator
from medpclip.knowledge import KnowledgeBase
from medpclip.networks import load_checkpoint

KEYS = ("top1_10way", "top1", "top5", "left_right", "retrieval_r1")


def error_report(scores: RegionScores, class_ids: list[str], knowledge: KnowledgeBase, shown: int) -> dict:
    """The ``shown`` classes most often outside the five best, and every left/right error (class, area %)."""
    missed = Counter(class_ids[t] for t, r in zip(scores.truth, scores.ranks.tolist(), strict=True) if r >= 5)
    lr_errors = [
        [class_ids[scores.truth[row]], round(100 * scores.areas[row], 2)]
        for row, hit in scores.twin_hits(knowledge, class_ids)
        if scores.visible[row] and not hit
    ]
    return {"missed_top5": missed.most_common(shown), "left_right_errors": lr_errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="recipe JSON naming the validation datalists")
    parser.add_argument("--checkpoint", action="append", required=True, help="repeat to average several")
    parser.add_argument("--samples", type=int, default=96, help="validation slices per label datalist")
    parser.add_argument("--displaced", action="store_true", help="slices moved inside the frame")
    parser.add_argument("--seed", type=int, default=1, help="as medpclip evaluate")
    parser.add_argument("--shown", type=int, default=12, help="most-missed classes to list")
    parser.add_argument("--out", help="JSON file for the report")
    args = parser.parse_args()
    torch.set_num_threads(2)
    models = [load_checkpoint(path).eval() for path in args.checkpoint]
    recipe = TrainConfig.from_json(args.config)
    validator = Validator.from_datalists(
        recipe.val_datalists,
        None,
        samples=args.samples,
        seed=args.seed,
        displace=args.displaced,
        image_size=models[0].image_size,
    )
    report = {"checkpoints": args.checkpoint, "displaced": args.displaced, "samples": args.samples, "sets": {}}
    for s in validator.region_sets:
        per_model = [region_scores(m, s.batches, validator.knowledge, s.class_ids, s.modality) for m in models]
        rows = {path: per_model[i] for i, path in enumerate(args.checkpoint)}
        if len(models) > 1:
            rows["ensemble"] = replace(per_model[0], sims=torch.stack([p.sims for p in per_model]).mean(0))
        metrics = {}
        for name, scores in rows.items():
            summary = summarise_regions(scores, validator.knowledge, s.class_ids)
            metrics[name] = {k: None if summary[k] != summary[k] else summary[k] for k in KEYS}  # NaN -> null
            print(f"{s.name} {name}: " + ", ".join(f"{k} {summary[k]:.3f}" for k in KEYS))
        errors = error_report(list(rows.values())[-1], s.class_ids, validator.knowledge, args.shown)
        print(f"{s.name} most missed (not in the best 5): {errors['missed_top5']}")
        print(f"{s.name} left/right errors ({len(errors['left_right_errors'])}): {errors['left_right_errors']}")
        report["sets"][s.name] = {"metrics": metrics, **errors}
    if args.out:
        atomic_write_json(args.out, report)
        print(json.dumps({"out": args.out}))


if __name__ == "__main__":
    main()
