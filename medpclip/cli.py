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
    demo.add_argument("--checkpoint", default=None, help="MedP-CLIP checkpoint (default: untrained tiny model)")
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from medpclip.demo import run_demo

            summary = run_demo(args.out, args.checkpoint)
            if args.json:
                print(json.dumps(summary))
            else:
                print(f"wrote {args.out}/summary.json and {args.out}/overlay.png ({summary['weights']})")
    except (ValueError, FileNotFoundError) as err:
        print(f"medpclip {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
