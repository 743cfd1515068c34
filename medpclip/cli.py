"""``medpclip`` command line. Errors go to stderr as one line with exit code 2."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medpclip", description="Region-aware medical CLIP (MedP-CLIP).")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the model on the built-in sample and write DIR/summary.json")
    demo.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    demo.add_argument("--checkpoint", default=None, help="MedP-CLIP checkpoint (default: the bundle's model.pt)")
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    train = sub.add_parser("train", help="train from a recipe (configs/*.json), resuming from its last checkpoint")
    train.add_argument("--config", required=True, help="recipe JSON, e.g. configs/cpu_tiny.json")
    train.add_argument("--iterations", type=int, default=None, help="override the recipe's iteration budget")
    train.add_argument("--out", default=None, help="override the recipe's output folder")
    evaluate = sub.add_parser("evaluate", help="held-out metrics of a checkpoint on a recipe's validation data")
    evaluate.add_argument("--config", required=True, help="recipe JSON naming the validation datalists")
    evaluate.add_argument("--checkpoint", required=True, help="MedP-CLIP checkpoint (model.pt)")
    evaluate.add_argument("--samples", type=int, default=96, help="validation slices per label datalist")
    evaluate.add_argument("--displaced", action="store_true", help="move slices inside the frame (unregistered)")
    evaluate.add_argument("--out", default=None, help="also write the metrics to this JSON file")
    return parser


def _shipped_checkpoint() -> str | None:
    """The bundle's trained checkpoint when this source tree has one."""
    from pathlib import Path

    from medpclip import bundle_dir

    path = Path(bundle_dir()) / "models" / "model.pt"
    return str(path) if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from medpclip.demo import run_demo

            summary = run_demo(args.out, args.checkpoint or _shipped_checkpoint())
            if args.json:
                print(json.dumps(summary))
            else:
                print(f"wrote {args.out}/summary.json and {args.out}/overlay.png ({summary['weights']})")
        elif args.command == "train":
            from medpclip.engines.training import TrainConfig, train

            config = TrainConfig.from_json(args.config, iterations=args.iterations, out_dir=args.out)
            print(f"wrote {train(config)}")
        elif args.command == "evaluate":
            from medpclip.engines.evaluation import evaluate_checkpoint
            from medpclip.engines.training import TrainConfig

            recipe = TrainConfig.from_json(args.config)
            metrics = evaluate_checkpoint(
                args.checkpoint,
                recipe.val_datalists,
                recipe.modality_datalist,
                samples=args.samples,
                displaced=args.displaced,
                seed=recipe.seed + 1,
                threads=recipe.threads,
                out=args.out,
            )
            print(json.dumps(metrics))
    except (ValueError, FileNotFoundError) as err:
        print(f"medpclip {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
