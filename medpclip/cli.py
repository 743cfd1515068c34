"""``medpclip`` command line (ARCHITECTURE.md section 5). ``--json`` prints one JSON object on stdout; errors go to
stderr as one line with exit code 2. :func:`one_line_errors` gives ``python -m monai.bundle run`` the same lines."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import warnings
from typing import NoReturn

__all__ = ["main", "one_line_errors"]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} should be a whole number of at least 1")
    return int(text)


def _numbers(count: tuple[int, ...]) -> callable:
    def parse(text: str) -> list[float]:
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if not all(math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(f"{text!r} has a coordinate that is not a finite number")
        if len(values) not in count:
            raise argparse.ArgumentTypeError(
                f"{text!r} should be {' or '.join(map(str, count))} comma-separated numbers"
            )
        return values

    return parse


def _add_prompts(parser: argparse.ArgumentParser) -> None:
    point = _numbers((2, 3))
    parser.add_argument("image", help="NIfTI (2D/3D), DICOM file or series folder, NRRD, PNG/JPEG")
    parser.add_argument("--point", type=point, action="append", default=[], metavar="I,J[,K]", help="positive click")
    parser.add_argument("--negative", type=point, action="append", default=[], metavar="I,J[,K]", help="negative click")
    parser.add_argument("--box", type=_numbers((4,)), default=None, metavar="I0,J0,I1,J1", help="box on the slice")
    parser.add_argument("--axis", type=int, default=2, choices=(0, 1, 2), help="slice axis of a volume (default 2)")
    parser.add_argument("--slice", type=int, default=None, help="slice index of a volume when no click picks it")
    parser.add_argument("--modality", default=None, help="override the modality (CT, MR, ...) of the file")
    parser.add_argument("--checkpoint", default=None, help="MedP-CLIP checkpoint (default: the bundle's model.pt)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="medpclip", description="Region-aware medical CLIP (MedP-CLIP).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="run the model on the sample cases and write DIR/summary.json + overlays")
    demo.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    demo.add_argument("--checkpoint", default=None, help="MedP-CLIP checkpoint (default: the bundle's model.pt)")
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    classify = sub.add_parser("classify", help="rank labels for an image or a prompted region (zero-shot)")
    _add_prompts(classify)
    classify.add_argument("--labels", required=True, help='comma-separated free text, e.g. "liver,spleen,kidney"')
    classify.add_argument("--mask", default=None, help="region mask file with the image's shape")
    segment = sub.add_parser("segment", help="segment the prompted structure (propagated through a volume)")
    _add_prompts(segment)
    segment.add_argument("--mask", default=None, help="prior mask file with the image's shape")
    segment.add_argument("--out", required=True, help="mask file to write (.nii.gz, .nii; .png for 2D images)")
    segment.add_argument("--no-propagate", action="store_true", help="segment only the prompted slice of a volume")
    bench = sub.add_parser("bench", help="speed benchmark with same-run references (ARCHITECTURE.md section 6)")
    bench.add_argument("--preset", default="base", help="model preset (default: base)")
    bench.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    bench.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median reported)")
    bench.add_argument("--no-references", action="store_true", help="skip SAM ViT-B and open_clip references")
    bench.add_argument("--json", action="store_true", help="print the results as one JSON object")
    train = sub.add_parser("train", help="train from a recipe (configs/*.json), resuming from its last checkpoint")
    train.add_argument("--config", required=True, help="recipe JSON, e.g. configs/cpu_tiny.json")
    train.add_argument("--iterations", type=int, default=None, help="override the recipe's iteration budget")
    train.add_argument("--out", default=None, help="override the recipe's output folder")
    evaluate = sub.add_parser("evaluate", help="held-out metrics of a checkpoint on a recipe's validation data")
    evaluate.add_argument("--config", required=True, help="recipe JSON naming the validation datalists")
    evaluate.add_argument("--checkpoint", required=True, help="MedP-CLIP checkpoint (model.pt)")
    evaluate.add_argument("--samples", type=int, default=96, help="validation slices per label datalist")
    evaluate.add_argument("--displaced", action="store_true", help="move slices inside the frame (unregistered)")
    evaluate.add_argument(
        "--split",
        choices=["validation", "training"],
        default="validation",
        help="held-out slices (default), or the training slices to compare with",
    )
    evaluate.add_argument(
        "--datalist",
        action="append",
        default=None,
        help="label datalist to evaluate on instead of the recipe's (repeatable; no modality images then)",
    )
    evaluate.add_argument(
        "--name-from",
        choices=["mask", "click"],
        default="mask",
        help="prompt each named region by its mask (default) or by one click at its centre, as an annotator does",
    )
    evaluate.add_argument(
        "--naming-views",
        type=_positive_int,
        default=1,
        help="name each region from this many slightly moved views of its slice, as the app does (default 1: the "
        "slice as it is)",
    )
    evaluate.add_argument("--out", default=None, help="also write the metrics to this JSON file")
    return parser


def _shipped_checkpoint() -> str | None:
    """The bundle's trained checkpoint when this source tree has one."""
    from pathlib import Path

    from medpclip import bundle_dir

    path = Path(bundle_dir()) / "models" / "model.pt"
    return str(path) if path.is_file() else None


def _model(checkpoint: str | None) -> object:
    from medpclip.networks import load_checkpoint

    path = checkpoint or _shipped_checkpoint()
    if path is None:
        raise ValueError("no checkpoint: give --checkpoint (this installation has no bundle/models/model.pt).")
    return load_checkpoint(path).eval()


def _prompts(args: argparse.Namespace) -> dict:
    return {
        "points": args.point,
        "negatives": args.negative,
        "box": args.box,
        "axis": args.axis,
        "slice_index": args.slice,
        "modality": args.modality,
    }


def _run(args: argparse.Namespace) -> dict | str:
    """The command's JSON result, or its plain-text message."""
    if args.command == "demo":
        from medpclip.demo import run_demo

        summary = run_demo(args.out, args.checkpoint or _shipped_checkpoint())
        return summary if args.json else f"wrote {args.out}/summary.json and overlays ({summary['weights']})"
    if args.command == "classify":
        from medpclip.inference import classify_file

        labels = list(dict.fromkeys(label.strip() for label in args.labels.split(",") if label.strip()))
        result = classify_file(_model(args.checkpoint), args.image, labels, mask=args.mask, **_prompts(args))
        if args.json:
            return result
        return "\n".join(f"{r['probability']:8.4f}  {r['label']}" for r in result["labels"])
    if args.command == "segment":
        from medpclip.inference import segment_file

        result = segment_file(
            _model(args.checkpoint),
            args.image,
            args.out,
            prior=args.mask,
            propagate_3d=not args.no_propagate,
            **_prompts(args),
        )
        return (
            result if args.json else f"wrote {result['mask']} ({result['voxels']} voxels on {result['slices']} slices)"
        )
    if args.command == "bench":
        from medpclip.bench import format_table, run_bench

        result = run_bench(args.preset, threads=args.threads, repeats=args.repeats, references=not args.no_references)
        return result if args.json else format_table(result)
    if args.command == "train":
        from medpclip.engines.training import TrainConfig, train

        config = TrainConfig.from_json(args.config, iterations=args.iterations, out_dir=args.out)
        return f"wrote {train(config)}"
    from medpclip.engines.evaluation import evaluate_checkpoint
    from medpclip.engines.training import TrainConfig

    recipe = TrainConfig.from_json(args.config)
    return evaluate_checkpoint(
        args.checkpoint,
        args.datalist or recipe.val_datalists,
        None if args.datalist else recipe.modality_datalist,
        samples=args.samples,
        displaced=args.displaced,
        split=args.split,
        seed=recipe.seed + 1,
        threads=recipe.threads,
        naming_prompt=args.name_from,
        naming_views=args.naming_views,
        out=args.out,
    )


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())  # one line, whatever the reader put in its message


def _input_error(err: BaseException | None) -> BaseException | None:
    """The ``ValueError`` / ``OSError`` (bad input, a file that cannot be read or written) behind ``err``, however
    deeply it was wrapped (MONAI's config parser raises ``RuntimeError("Failed to evaluate ...")`` from it)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, (ValueError, OSError)):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def one_line_errors(prog: str = "medpclip bundle") -> None:
    """Install a ``sys.excepthook`` that prints an uncaught input error as one line ``<prog>: error: <reason>``
    instead of a traceback (the process still exits with status 1); any other exception, a bug, keeps its traceback.
    The bundle's ``inference.json`` calls it first in ``initialize``."""
    default = sys.excepthook

    def hook(kind: type[BaseException], err: BaseException, tb: object) -> None:
        cause = _input_error(err)
        if cause is None:
            default(kind, err, tb)
        else:
            print(f"{prog}: error: {_one_line(cause)}", file=sys.stderr)

    sys.excepthook = hook


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # MONAI's DICOM reader warns on every start that the optional GPU decoder is absent: not the user's concern
    logging.getLogger("monai.data").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
    warnings.filterwarnings("ignore", message="Divide by zero")  # MONAI scaling a constant image: still valid
    try:
        result = _run(args)
    except (ValueError, OSError) as err:  # bad input, or a file that cannot be read or written (disk full, ...)
        print(f"medpclip {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    if hasattr(sys.stdout, "reconfigure"):  # file names with undecodable bytes are printed as they came in
        sys.stdout.reconfigure(errors="surrogateescape")
    print(json.dumps(result) if isinstance(result, dict) else result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
