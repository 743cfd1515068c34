"""``medpclip bench``: speed and memory of one preset with random weights, and the references of ARCHITECTURE.md
section 6 measured in the same process (SAM ViT-B @1024 from ``segment-anything``, open_clip ViT-B/16 encode, fp32
matmul GFLOP/s), so that the ratios compare like with like on the machine at hand.

Every figure is the median of ``repeats`` timed runs after one warm-up, under ``torch.inference_mode`` except the
training steps, with ``torch.set_num_threads(threads)``.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from medpclip.data.dataset import RegionBatch
from medpclip.data.intensity import MODALITY_CLASSES
from medpclip.engines.steps import RegionTrainStep
from medpclip.inference.predictor import SlicePredictor
from medpclip.inference.views import NAMING_VIEWS
from medpclip.knowledge import default_knowledge_base
from medpclip.losses import contrastive_loss
from medpclip.networks import RegionPrompts, build_model

__all__ = ["TARGETS", "format_table", "run_bench"]

# ratio -> (target, "<=" or ">="), ARCHITECTURE.md section 6 (base preset, 2 threads)
TARGETS = {
    "first_click_vs_clip_encode": (1.4, "<="),
    "refine_click_vs_clip_encode": (0.35, "<="),
    "prompts32_vs_prompt1": (3.0, "<="),
    "train_step_vs_clip": (1.15, "<="),
    "sam_vitb_vs_first_click": (50.0, ">="),
}
SLICE_SIDE = 512  # a CT-sized slice: the predictor resizes it into the model input, as in use
TRAIN_BATCH, TRAIN_REGIONS = 4, 8


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocations, lazy initialisation, text cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def run_bench(preset: str = "base", *, threads: int = 2, repeats: int = 5, references: bool = True) -> dict:
    """Run the benchmark; returns ``{"machine", "settings", "ms", "throughput", "ratios", "targets",
    "peak_rss_mib"}`` (times in milliseconds, medians)."""
    if repeats < 1 or threads < 1:
        raise ValueError("repeats and threads must be at least 1.")
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = build_model(preset).eval()
    ms: dict[str, float] = {}
    steps = _our_steps(model, preset) + (_reference_steps() if references else [])
    for name, fn, n in tqdm(steps, desc="bench", unit="figure"):
        ms[name] = _median_ms(fn, min(repeats, n) if n else repeats)
    ms_per_image = ms.pop("zero_shot_batch8") / 8
    gflops = 2 * 2048**3 / (ms.pop("matmul_2048") / 1000) / 1e9 if references else None
    ratios = {
        "prompts32_vs_prompt1": ms["prompts32_full"] / ms["first_click"],
        "prompts32_vs_prompt1_cached_prefix": ms["prompts32_cached"] / ms["prompt1_cached"],
        "train_step_vs_clip": ms["train_step_medpclip"] / ms["train_step_plain_clip"],
        "train_step_1to3_rounds_vs_clip": ms["train_step_medpclip_1to3_rounds"] / ms["train_step_plain_clip"],
    }
    if references:
        ratios.update(
            first_click_vs_clip_encode=ms["first_click"] / ms["open_clip_vitb16_encode"],
            refine_click_vs_clip_encode=ms["refine_click"] / ms["open_clip_vitb16_encode"],
            sam_vitb_vs_first_click=(ms["sam_vitb_encoder"] + ms["sam_vitb_decoder"]) / ms["first_click"],
        )
    return {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__},
        "settings": {"preset": preset, "threads": threads, "repeats": repeats, "slice": [SLICE_SIDE, SLICE_SIDE]},
        "ms": {k: round(v, 2) for k, v in ms.items()},
        "throughput": {
            "zero_shot_images_per_s": round(1000 / ms_per_image, 2),
            "matmul_fp32_gflops": None if gflops is None else round(gflops, 1),
        },
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "targets": {
            k: {"target": f"{op} {t}", "met": ratios[k] <= t if op == "<=" else ratios[k] >= t}
            for k, (t, op) in TARGETS.items()
            if k in ratios
        },
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` where there is one (Linux), else what ``platform`` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def _our_steps(model: torch.nn.Module, preset: str) -> list[tuple[str, Callable[[], object], int]]:
    """``(name, fn, max repeats or 0)`` for the model's own figures."""
    rng = np.random.default_rng(0)
    slice_ = torch.rand(1, SLICE_SIDE, SLICE_SIDE)
    predictor = SlicePredictor(model)
    click = [[SLICE_SIDE / 2, SLICE_SIDE / 2]]

    def first_click() -> None:
        predictor.set_image(slice_)
        predictor.segment(points=click)

    predictor.set_image(slice_)
    first = predictor.segment(points=click)

    def refine_click() -> None:
        predictor.segment(points=click, negatives=[[SLICE_SIDE / 4, SLICE_SIDE / 4]], prev_logits=first)

    labels = ["CT", "MR", "X-ray", "ultrasound", "nuclear medicine", "liver", "brain", "lung"]

    def name_click(views: int) -> Callable[[], None]:
        """Name the clicked region of the cached slice from ``views`` views (the text embeddings are cached)."""
        namer = SlicePredictor(model, naming_views=views)
        namer.set_image(slice_)
        return lambda: namer.classify(labels, points=click)

    size = model.image_size
    image = torch.rand(1, 1, size, size)
    boxes32 = _random_boxes(rng, 32, size)

    def prompts_full(boxes: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                model.decode_masks(model.encode_image(image, RegionPrompts(boxes=boxes)))

        return run

    with torch.inference_mode():
        prefix = model.encode_prefix(image)

    def prompts_cached(boxes: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                model.decode_masks(model.encode_image(image, RegionPrompts(boxes=boxes), prefix=prefix))

        return run

    classifier = SlicePredictor(model)
    batch8 = torch.rand(8, 1, size, size)

    def zero_shot() -> None:
        with torch.inference_mode():
            embeds = model.encode_image(batch8).global_embeds
            for row in embeds:
                classifier.rank_embedding(row, labels)

    return [
        ("first_click", first_click, 0),
        ("refine_click", refine_click, 0),
        ("name_click_1_view", name_click(1), 0),
        (f"name_click_{NAMING_VIEWS}_views", name_click(NAMING_VIEWS), 0),
        ("prompts32_full", prompts_full(boxes32), 0),
        ("prompt1_cached", prompts_cached(boxes32[:, :1]), 0),
        ("prompts32_cached", prompts_cached(boxes32), 0),
        ("zero_shot_batch8", zero_shot, 0),
        *_train_steps(preset, rng),
    ]


def _random_boxes(rng: np.random.Generator, n: int, size: int) -> torch.Tensor:
    """``[1, n, 4]`` boxes ``(i0, j0, i1, j1)`` inside a ``size`` square."""
    corners = rng.uniform(0, size - 1, (n, 2, 2))
    lo, hi = corners.min(1), corners.max(1)
    return torch.tensor(np.concatenate([lo, hi], 1)[None], dtype=torch.float32)


def _train_steps(preset: str, rng: np.random.Generator) -> list[tuple[str, Callable[[], object], int]]:
    """Our training step (region–text and vocabulary contrast, mask loss with click rounds, AdamW) against
    a plain CLIP step of the same vision tower and text tower (image–text InfoNCE, AdamW), on one batch."""
    knowledge = default_knowledge_base()
    entries = [e.id for e in knowledge if e.kind not in ("modality",)][: TRAIN_BATCH * TRAIN_REGIONS]
    train_model = build_model(preset)
    clip_model = build_model(preset, region_mode="global")
    size = train_model.image_size
    masks = torch.zeros(TRAIN_BATCH, TRAIN_REGIONS, size, size)
    boxes = _random_boxes(rng, TRAIN_BATCH * TRAIN_REGIONS, size).view(TRAIN_BATCH, TRAIN_REGIONS, 4)
    for b in range(TRAIN_BATCH):
        for r in range(TRAIN_REGIONS):
            i0, j0, i1, j1 = boxes[b, r].round().int().tolist()
            masks[b, r, i0 : i1 + 1, j0 : j1 + 1] = 1
    ids = [entries[b * TRAIN_REGIONS : (b + 1) * TRAIN_REGIONS] for b in range(TRAIN_BATCH)]
    batch = RegionBatch(
        images=torch.rand(TRAIN_BATCH, 1, size, size),
        masks=masks,
        boxes=boxes,
        points=((boxes[..., :2] + boxes[..., 2:]) / 2)[:, :, None],
        point_labels=torch.ones(TRAIN_BATCH, TRAIN_REGIONS, 1, dtype=torch.long),
        texts=[[knowledge[e].name for e in row] for row in ids],
        entry_ids=ids,
        names=ids,
        modalities=["CT"] * TRAIN_BATCH,
    )
    out = []
    # one mask round, and the training default: 1 to 3 rounds drawn per step (the median of a few random draws)
    for name, rounds in (("train_step_medpclip", 1), ("train_step_medpclip_1to3_rounds", 3)):
        step = RegionTrainStep(knowledge=knowledge, forms=("box",), click_rounds=rounds, vocabulary=entries, seed=0)
        out.append((name, _trainer(train_model, lambda m, s=step: sum(s.losses(m, batch).values())), 5))
    captions = [row[0] for row in batch.texts]
    # training caches the frozen text features of every caption it draws; warm that cache as a long run has it
    texts = {e: knowledge.caption_space(e, m) for e in entries for m in (None, "CT")}
    for entry_id in list(texts):
        for negative in knowledge.hard_negatives(entry_id, limit=4):
            texts[negative] = knowledge.caption_space(negative, "CT")
    for name in MODALITY_CLASSES.values():
        texts[name] = knowledge.caption_space(knowledge.lookup(name).id)
    for model in (train_model, clip_model):
        model.text.features([t for group in texts.values() for t in group] + captions)

    def clip_loss(m: torch.nn.Module) -> torch.Tensor:
        enc = m.encode_image(batch.images)
        return contrastive_loss(enc.global_embeds, m.encode_text(captions), list(range(TRAIN_BATCH)), m.logit_scale)

    out.append(("train_step_plain_clip", _trainer(clip_model, clip_loss), 5))
    return out


def _trainer(model: torch.nn.Module, loss: Callable[[torch.nn.Module], torch.Tensor]) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss(model).backward()
        optimizer.step()

    return step


def _reference_steps() -> list[tuple[str, Callable[[], object], int]]:
    """SAM ViT-B @1024 encoder and prompt+decoder, open_clip ViT-B/16 encode, fp32 matmul (random weights)."""
    try:
        import open_clip
        from segment_anything import sam_model_registry
    except ImportError as err:
        raise ValueError(f"the references need {err.name} (make install installs it) or --no-references.") from err
    sam = sam_model_registry["vit_b"](checkpoint=None).eval()
    sam_image = torch.rand(1, 3, 1024, 1024)
    with torch.inference_mode():
        sam_embedding = sam.image_encoder(sam_image)
    point = (torch.tensor([[[512.0, 512.0]]]), torch.tensor([[1]]))

    def sam_encoder() -> None:
        with torch.inference_mode():
            sam.image_encoder(sam_image)

    def sam_decoder() -> None:
        with torch.inference_mode():
            sparse, dense = sam.prompt_encoder(points=point, boxes=None, masks=None)
            sam.mask_decoder(
                image_embeddings=sam_embedding,
                image_pe=sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )

    clip = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    clip_image = torch.rand(1, 3, 224, 224)

    def clip_encode() -> None:
        with torch.inference_mode():
            clip.encode_image(clip_image)

    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    return [
        ("sam_vitb_encoder", sam_encoder, 3),  # ~20 s each on 2 cores
        ("sam_vitb_decoder", sam_decoder, 0),
        ("open_clip_vitb16_encode", clip_encode, 0),
        ("matmul_2048", lambda: a @ b, 0),
    ]


def format_table(result: dict) -> str:
    """The result as a plain-text table: timings, throughput, ratios against their targets."""
    s = result["settings"]
    lines = [f"medpclip bench: preset {s['preset']}, {s['threads']} threads, median of {s['repeats']}", ""]
    lines += [f"  {name:<32} {value:>10.1f} ms" for name, value in result["ms"].items()]
    lines += [f"  {name:<32} {value:>10}" for name, value in result["throughput"].items() if value is not None]
    lines.append("")
    for name, value in result["ratios"].items():
        target = result["targets"].get(name)
        verdict = f"target {target['target']}: {'met' if target['met'] else 'NOT met'}" if target else ""
        lines.append(f"  {name:<36} {value:>8.3f}  {verdict}")
    lines.append(f"\n  peak RSS {result['peak_rss_mib']} MiB")
    return "\n".join(lines)
