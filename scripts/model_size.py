"""Parameter count and no-prompt forward time of a model preset (a first figure before ``medpclip bench``).

Usage: python scripts/model_size.py --preset base --threads 2 --repeats 10 [--reference]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from medpclip.networks import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--reference", action="store_true", help="also time open_clip ViT-B-16 (random weights)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.preset).eval()
    size = model.image_size
    images = torch.rand(1, 3, size, size)
    times = _time(lambda: model.encode_image(images), args.repeats)
    count = lambda prefix: sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))  # noqa: E731
    report = {
        "preset": args.preset,
        "parameters_total": count(""),
        "parameters_vision_tower": count("vision."),
        "parameters_prompt_path": count("prompt_encoder.") + count("region_encoder."),
        "parameters_mask_decoder": count("mask_decoder."),
        "parameters_text_projection": count("text."),
        "frozen_text_encoder_parameters": sum(p.numel() for p in model.text.encoder.parameters()),
        "no_prompt_forward_ms_median": round(1000 * statistics.median(times), 1),
        "no_prompt_forward_ms_min": round(1000 * min(times), 1),
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    if args.reference:
        import open_clip

        clip = open_clip.create_model("ViT-B-16", pretrained=None).eval()
        pixels = torch.rand(1, 3, 224, 224)
        ref = _time(lambda: clip.encode_image(pixels), args.repeats)
        report["open_clip_vit_b16_encode_ms_median"] = round(1000 * statistics.median(ref), 1)
        report["forward_vs_open_clip"] = round(statistics.median(times) / statistics.median(ref), 3)
    print(json.dumps(report, indent=2))


def _time(fn: Callable[[], object], repeats: int) -> list[float]:
    """Seconds per call of ``fn`` under inference mode, after one warm-up call."""
    times = []
    with torch.inference_mode():
        fn()
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    main()
