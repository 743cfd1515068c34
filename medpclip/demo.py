"""The embedded default: run the model on the built-in sample image and write ``summary.json`` + an overlay PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from medpclip.atomic import atomic_write_bytes, atomic_write_json
from medpclip.data.phantoms import PHANTOM_LABELS, phantom_slice
from medpclip.networks import RegionPrompts, build_model, load_checkpoint

__all__ = ["run_demo"]

DEMO_LABELS = ["liver", "kidney", "tumour", "spleen", "lung"]


def run_demo(out_dir: str | Path, checkpoint: str | Path | None = None) -> dict:
    """Encode the sample slice with no prompt, a click and a box; rank ``DEMO_LABELS``; decode a mask.

    Returns the summary written to ``out_dir/summary.json``.
    """
    out_dir = Path(out_dir)
    torch.manual_seed(0)
    model = (load_checkpoint(checkpoint) if checkpoint else build_model("tiny")).eval()
    size = model.image_size
    image, labels = phantom_slice(size=size, seed=0)
    tumour = np.argwhere(labels == 5).mean(0).round().tolist()
    liver = np.argwhere(labels == 2)
    liver_box = [*liver.min(0).tolist(), *liver.max(0).tolist()]
    prompts = {
        "whole image": None,
        "click on tumour": RegionPrompts(points=torch.tensor([[[tumour]]], dtype=torch.float32)),
        "box around liver": RegionPrompts(boxes=torch.tensor([[liver_box]], dtype=torch.float32)),
    }
    batch = torch.from_numpy(image)[None, None]
    with torch.inference_mode():
        text = model.encode_text(DEMO_LABELS)
        prefix = model.encode_prefix(batch)
        results, masks = {}, {}
        for name, prompt in prompts.items():
            enc = model.encode_image(batch, prompt, prefix=prefix)
            probs = model.similarity(enc.region_embeds[0, 0], text).softmax(-1)
            ranking = sorted(zip(DEMO_LABELS, probs.tolist(), strict=True), key=lambda x: -x[1])
            mask = model.decode_masks(enc)[0, 0]
            masks[name] = mask
            results[name] = {
                "labels": [{"label": lab, "probability": round(p, 4)} for lab, p in ranking],
                "mask_logits_shape": list(mask.shape),
                "mask_fraction": round(float((mask > 0).float().mean()), 4),
            }
    summary = {
        "weights": str(checkpoint) if checkpoint else "untrained (random initialisation): rankings are not meaningful",
        "model": model.config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "image": {"source": "built-in synthetic phantom", "shape": list(batch.shape), "labels": PHANTOM_LABELS},
        "shapes": {
            "global_embedding": list(enc.global_embeds.shape),
            "region_embeddings": list(enc.region_embeds.shape),
            "patch_tokens": list(enc.patch_tokens.shape),
            "text_embeddings": list(text.shape),
        },
        "prompts": results,
    }
    atomic_write_json(out_dir / "summary.json", summary)
    caption = "untrained model: mask is noise" if checkpoint is None else f"checkpoint {Path(checkpoint).name}"
    png = _overlay_png(image, masks["box around liver"], liver_box, tumour, caption)
    atomic_write_bytes(out_dir / "overlay.png", png)
    return summary


def _overlay_png(
    image: np.ndarray, mask_logits: torch.Tensor, box: list[int], point: list[float], caption: str
) -> bytes:
    """The slice x4 with the predicted mask (green), the box prompt (yellow), the click (red) and a caption."""
    import io

    grey = (image * 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, -1)
    mask = torch.nn.functional.interpolate(mask_logits[None, None], size=image.shape, mode="bilinear")[0, 0] > 0
    rgb[mask.numpy()] = (0.5 * rgb[mask.numpy()] + [0, 90, 0]).astype(np.uint8)
    picture = Image.fromarray(rgb).resize((image.shape[1] * 4, image.shape[0] * 4), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    i0, j0, i1, j1 = (4 * v for v in box)
    draw.rectangle([j0, i0, j1, i1], outline=(255, 200, 0), width=2)
    pi, pj = (4 * v for v in point)
    draw.ellipse([pj - 6, pi - 6, pj + 6, pi + 6], outline=(255, 0, 0), width=3)
    draw.text((6, 6), f"box around liver + click on tumour | {caption}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
