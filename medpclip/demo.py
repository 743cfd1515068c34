"""The embedded default (``make demo``): the model on two real sample cases, a CT liver volume (LiTS case 117, from
the offline ``liver-ct-segmentation-package``) and a brain MR slice (MNI152 T1, the bundle's sample). Per case one
click, as an annotator would place it; writes the mask as NIfTI, a PNG overlay (image, click, mask, top-3 labels)
and ``summary.json``.
"""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy.ndimage import distance_transform_edt

from medpclip import bundle_dir
from medpclip.atomic import atomic_write_bytes, atomic_write_json
from medpclip.inference import SlicePredictor, classify_file, classify_volume, load_image, segment_volume, slice_of
from medpclip.networks import build_model, load_checkpoint

__all__ = ["run_demo"]

MODALITIES = ["CT", "MR", "X-ray", "ultrasound", "nuclear medicine"]
CT_LABELS = ["liver", "spleen", "kidney", "stomach", "lung", "heart"]
BRAIN_LABELS = [
    "left precentral gyrus",
    "right precentral gyrus",
    "left postcentral gyrus",
    "left superior frontal gyrus",
    "left middle frontal gyrus",
    "left superior parietal gyrus",
]
BRAIN_CLICK = (67, 113)  # left precentral gyrus on the sample slice (scripts/make_bundle_sample.py)


def run_demo(out_dir: str | Path, checkpoint: str | Path | None = None) -> dict:
    """Run both cases and write ``out_dir/{summary.json, <case>_overlay.png, <case>_mask.nii.gz}``; returns the
    summary. Without a checkpoint the model is untrained (random weights) and says so."""
    out = Path(out_dir)
    torch.manual_seed(0)
    model = (load_checkpoint(checkpoint) if checkpoint else build_model("tiny")).eval()
    cases = [_ct_liver_case(model, out), _brain_mr_case(model, out)]
    summary = {
        "weights": str(checkpoint) if checkpoint else "untrained (random initialisation): results are not meaningful",
        "model": model.config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "coordinates": "voxel indices (i, j, k) of the image as MONAI LoadImage returns it",
        "cases": cases,
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def _ct_liver_case(model: torch.nn.Module, out: Path) -> dict:
    """LiTS 117: a click in the liver on its largest axial slice, segmented and propagated through the volume."""
    from medpclip.data.samples import lits_affine, lits_arrays

    ct, label = lits_arrays()
    image = out / "inputs" / "lits_117_ct.nii.gz"
    if not image.is_file():  # the input the CLI commands below can be re-run on
        image.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(ct, lits_affine(ct.shape)), image)
    liver = label > 0
    k = int(np.argmax(liver.sum((0, 1))))
    i, j = _deepest(liver[..., k])
    click = [i, j, k]
    mask_path = out / "ct_liver_mask.nii.gz"
    volume, seg, labels = _click_case(model, image, mask_path, click, CT_LABELS, "CT")
    whole = classify_file(model, image, MODALITIES, slice_index=k)["labels"]
    mask = np.asarray(nib.load(mask_path).dataobj) > 0
    dice = 2 * float((mask & liver).sum()) / float(mask.sum() + liver.sum())
    png = _overlay(slice_of(volume, 2, k)[0].numpy(), mask[..., k], (i, j), labels, whole, "LiTS 117 CT, axial")
    atomic_write_bytes(out / "ct_liver_overlay.png", png)
    return {
        "case": "ct_liver",
        "image": str(image),
        "source": "LiTS challenge case 117 (liver-ct-segmentation-package; non-commercial licence)",
        "click": click,
        "region_labels": labels,
        "image_labels": whole,
        "mask": seg,
        "dice_vs_reference_3d": round(dice, 4),
        "overlay": str(out / "ct_liver_overlay.png"),
        "commands": [
            f"medpclip segment {image} --point {i},{j},{k} --modality CT --out {mask_path}",
            f"medpclip classify {image} --point {i},{j},{k} --modality CT --labels {','.join(CT_LABELS)}",
        ],
    }


def _brain_mr_case(model: torch.nn.Module, out: Path) -> dict:
    """The bundle's MNI152 T1 axial slice with a click in the left precentral gyrus."""
    image = Path(bundle_dir()) / "docs" / "samples" / "brain_mr_axial.nii.gz"
    mask_path = out / "brain_mr_mask.nii.gz"
    volume, seg, labels = _click_case(model, image, mask_path, list(BRAIN_CLICK), BRAIN_LABELS, "MR")
    whole = classify_file(model, image, MODALITIES)["labels"]
    plane = volume[0].numpy()
    mask = np.asarray(nib.load(mask_path).dataobj).reshape(plane.shape) > 0
    png = _overlay(plane, mask, BRAIN_CLICK, labels, whole, "MNI152 T1, axial")
    atomic_write_bytes(out / "brain_mr_overlay.png", png)
    i, j = BRAIN_CLICK
    return {
        "case": "brain_mr",
        "image": str(image),
        "source": "MNI152 2009a T1 template (nilearn), AAL3 region under the click: left precentral gyrus",
        "click": list(BRAIN_CLICK),
        "region_labels": labels,
        "image_labels": whole,
        "mask": seg,
        "overlay": str(out / "brain_mr_overlay.png"),
        "commands": [
            f"medpclip segment {image} --point {i},{j} --modality MR --out {mask_path}",
            f"medpclip classify {image} --point {i},{j} --modality MR --labels '{','.join(BRAIN_LABELS)}'",
        ],
    }


def _click_case(
    model: torch.nn.Module, image: Path, mask_path: Path, click: list[int], labels: list[str], modality: str
) -> tuple[torch.Tensor, dict, list[dict]]:
    """Read ``image`` once; segment the clicked structure into ``mask_path`` and rank ``labels`` for it, with one
    predictor. Returns the loaded image, the mask summary and the ranking."""
    volume = load_image(image, modality)
    predictor = SlicePredictor(model, modality=modality)
    seg = segment_volume(predictor, volume, mask_path, points=[click])
    ranking = classify_volume(predictor, volume, labels, points=[click])["labels"]
    return volume, seg, ranking


def _deepest(mask: np.ndarray) -> tuple[int, int]:
    """The voxel of a 2D mask farthest from its border (where an annotator would click)."""
    depth = distance_transform_edt(mask)
    i, j = np.unravel_index(int(np.argmax(depth)), mask.shape)
    return int(i), int(j)


def _overlay(
    plane: np.ndarray, mask: np.ndarray, click: tuple[int, int], labels: list[dict], whole: list[dict], title: str
) -> bytes:
    """PNG of an axial ``[I, J]`` slice of a RAS volume in radiological display (patient's right on the left,
    anterior up), scaled x4: the mask in green, the click in red, the top-3 region and image labels below."""
    grey = (np.clip(plane, 0, 1) * 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, -1)
    rgb[mask] = (0.55 * rgb[mask] + [0, 110, 0]).astype(np.uint8)
    # array (i, j) = (x: left->right, y: posterior->anterior) -> display rows = -y, columns = -x
    shown = rgb.transpose(1, 0, 2)[::-1, ::-1]
    scale = 4
    rows, cols = shown.shape[:2]
    picture = Image.new("RGB", (cols * scale, rows * scale + 78), (0, 0, 0))
    picture.paste(Image.fromarray(np.ascontiguousarray(shown)).resize((cols * scale, rows * scale), Image.NEAREST))
    draw = ImageDraw.Draw(picture)
    r, c = (plane.shape[1] - 1 - click[1]) * scale, (plane.shape[0] - 1 - click[0]) * scale
    draw.ellipse([c - 7, r - 7, c + 7, r + 7], outline=(255, 40, 40), width=3)
    draw.text((6, 6), f"{title} | click (red), predicted mask (green) | R on the left", fill=(255, 255, 0))
    top = ", ".join(f"{x['label']} {x['probability']:.2f}" for x in labels[:3])
    image_top = ", ".join(f"{x['label']} {x['probability']:.2f}" for x in whole[:3])
    draw.text((6, rows * scale + 8), f"region: {top}", fill=(255, 255, 255))
    draw.text((6, rows * scale + 30), f"image:  {image_top}", fill=(200, 200, 200))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
