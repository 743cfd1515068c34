"""Files in, files out: classify an image or a prompted region, segment a prompted structure (propagated through
a volume), for the CLI and the bundle's ``inference.json``. Prompts are voxel indices as
:mod:`medpclip.inference.volume` describes."""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from PIL import Image

from medpclip.atomic import atomic_write_bytes, atomic_write_json
from medpclip.inference.images import load_image, load_mask
from medpclip.inference.orientation import Reorientation
from medpclip.inference.predictor import SlicePredictor
from medpclip.inference.volume import SlicePrompt, classify_region, propagate, resolve_prompt, segment
from medpclip.networks.model import MedPCLIP

__all__ = [
    "MASK_SUFFIXES",
    "classify_file",
    "classify_volume",
    "segment_and_classify",
    "segment_file",
    "segment_volume",
    "write_mask",
]

MASK_SUFFIXES = (".nii.gz", ".nii", ".png")


def classify_file(
    model: MedPCLIP,
    image: str | Path,
    labels: Sequence[str],
    *,
    mask: str | Path | None = None,
    modality: str | None = None,
    **prompt: object,
) -> dict:
    """``{"labels": [{"label", "probability"}, ...], "slice": int | None}``: ``labels`` ranked for the prompted
    region, or for the whole image (the middle or ``slice_index`` slice of a volume) without a prompt. ``prompt``:
    ``points``, ``negatives``, ``box``, ``axis``, ``slice_index`` as :func:`classify_volume` takes them."""
    _check_labels(labels)
    volume = load_image(image, modality)
    region = None if mask is None else load_mask(mask)
    return classify_volume(SlicePredictor(model, modality=modality), volume, labels, region=region, **prompt)


def classify_volume(
    predictor: SlicePredictor,
    volume: MetaTensor,
    labels: Sequence[str],
    *,
    points: Sequence[Sequence[float]] = (),
    negatives: Sequence[Sequence[float]] = (),
    box: Sequence[float] | None = None,
    region: np.ndarray | None = None,
    axis: int = 2,
    slice_index: int | None = None,
) -> dict:
    """:func:`classify_file` on a loaded ``[1, *spatial]`` image; ``region`` is a bool mask of its shape."""
    _check_labels(labels)
    orient, ras, prompt, ras_axis, ras_region = _prompt_in_ras(
        volume, points, negatives, box, region, axis, slice_index
    )
    only_mask = region is not None and not (prompt.points or prompt.negatives or prompt.box)
    ranked = classify_region(predictor, ras, prompt, labels, ras_axis, ras_region if only_mask else None)
    return {"labels": ranked, "slice": None if prompt.index is None else orient.slice_index(axis, prompt.index)}


def segment_file(
    model: MedPCLIP,
    image: str | Path,
    out: str | Path,
    *,
    prior: str | Path | None = None,
    modality: str | None = None,
    **prompt: object,
) -> dict:
    """Segment the prompted structure and write it to ``out`` (NIfTI with the image's affine, or PNG for a 2D
    image), atomically. In a volume the prompted slice's mask is propagated through the neighbouring slices
    unless ``propagate_3d`` is False. ``prompt``: ``points``, ``negatives``, ``box``, ``axis``, ``slice_index``,
    ``propagate_3d`` as :func:`segment_volume` takes them. Returns ``{"mask", "shape", "slice", "voxels",
    "slices"}``."""
    out = _check_mask_path(out, image, prior)
    volume = load_image(image, modality)
    prior_mask = None if prior is None else load_mask(prior)
    return segment_volume(SlicePredictor(model, modality=modality), volume, out, prior=prior_mask, **prompt)


def segment_volume(
    predictor: SlicePredictor,
    volume: MetaTensor,
    out: str | Path,
    *,
    points: Sequence[Sequence[float]] = (),
    negatives: Sequence[Sequence[float]] = (),
    box: Sequence[float] | None = None,
    prior: np.ndarray | None = None,
    axis: int = 2,
    slice_index: int | None = None,
    propagate_3d: bool = True,
    value: int = 1,
) -> dict:
    """:func:`segment_file` on a loaded ``[1, *spatial]`` image; ``prior`` is a bool mask of its shape. The mask
    is written with voxels ``value`` (a label index, as MONAI Label clients expect) on 0."""
    out = _check_mask_path(out)
    spatial = tuple(volume.shape[1:])
    if out.suffix == ".png" and len(spatial) != 2:
        raise ValueError("a PNG mask needs a 2D image; write a 3D mask as .nii.gz.")
    orient, ras, prompt, ras_axis, _ = _prompt_in_ras(volume, points, negatives, box, prior, axis, slice_index)
    logits = segment(predictor, ras, prompt, ras_axis)
    if len(spatial) == 2:
        mask = (logits > 0).numpy()
    elif propagate_3d:
        mask = propagate(predictor, ras, ras_axis, prompt.index, logits)
    else:
        mask = np.zeros(ras.shape[1:], bool)
        np.moveaxis(mask, ras_axis, 0)[prompt.index] = (logits > 0).numpy()
    mask = orient.back(mask)
    written = write_mask(mask.astype(np.uint8) * np.uint8(value), volume, out)
    slices = int(np.moveaxis(mask, axis, 0).any(axis=(1, 2)).sum()) if len(spatial) == 3 else 1
    return {
        "mask": str(written),
        "shape": list(spatial),
        "slice": None if prompt.index is None else orient.slice_index(axis, prompt.index),
        "voxels": int(mask.sum()),
        "slices": slices,
    }


class _RasPrompt(NamedTuple):
    orient: Reorientation
    volume: torch.Tensor  # [C, *spatial] in RAS order
    prompt: SlicePrompt  # in RAS voxel indices
    axis: int  # the slice axis in RAS order
    mask: np.ndarray | None  # the mask prompt in RAS order


def _prompt_in_ras(
    volume: MetaTensor,
    points: Sequence[Sequence[float]],
    negatives: Sequence[Sequence[float]],
    box: Sequence[float] | None,
    mask: np.ndarray | None,
    axis: int,
    slice_index: int | None,
) -> _RasPrompt:
    """Check the prompts in the file's voxel indices (so errors quote what the user gave), then carry the volume
    and the prompts into RAS order, the model's (each reoriented once)."""
    spatial = tuple(volume.shape[1:])
    given = {"points": points, "negatives": negatives, "box": box, "mask": mask}
    prompt = resolve_prompt(spatial, **given, axis=axis, slice_index=slice_index)  # validates in the file's terms
    orient = Reorientation(spatial, getattr(volume, "affine", None))
    if orient.is_identity:
        return _RasPrompt(orient, volume, prompt, axis, mask)
    ras, ras_mask = orient.volume(volume), None if mask is None else orient.array(mask)
    prompt = resolve_prompt(
        tuple(ras.shape[1:]),
        points=[orient.index(p) for p in points],
        negatives=[orient.index(p) for p in negatives],
        box=None if box is None else orient.box(box, axis),
        mask=ras_mask,
        axis=orient.axis(axis),
        slice_index=None if slice_index is None else orient.slice_index(axis, slice_index),
    )
    return _RasPrompt(orient, ras, prompt, orient.axis(axis), ras_mask)


def segment_and_classify(
    model: MedPCLIP,
    image: str | Path,
    output_dir: str | Path,
    *,
    points: Sequence[Sequence[float]] = (),
    negatives: Sequence[Sequence[float]] = (),
    box: Sequence[float] | None = None,
    labels: Sequence[str] = (),
    axis: int = 2,
    modality: str | None = None,
) -> dict:
    """The bundle's inference: segment the prompted structure (propagated in a volume) and rank ``labels`` for
    the prompted region; writes ``<stem>_mask.nii.gz`` (the image's geometry) and ``<stem>_labels.json`` into
    ``output_dir`` and returns the JSON summary. Without a click or box only the ranking is made (of the whole
    image) and the mask is empty. The image is read once and one predictor serves both."""
    out = Path(output_dir)
    stem = Path(str(image).rstrip("/")).name.split(".")[0] or "image"  # ".hidden.nii.gz", "..": no empty names
    mask_path = _check_mask_path(out / f"{stem}_mask.nii.gz", image)
    volume = load_image(image, modality)
    predictor = SlicePredictor(model, modality=modality)
    prompts = {"points": points, "negatives": negatives, "box": box, "axis": axis}
    summary: dict = {"image": str(image)}
    summary["labels"] = classify_volume(predictor, volume, labels, **prompts)["labels"] if labels else []
    if points or box is not None:
        summary.update(segment_volume(predictor, volume, mask_path, **prompts))
    else:
        write_mask(np.zeros(volume.shape[1:], bool), volume, mask_path)
        summary.update(mask=str(mask_path), shape=list(volume.shape[1:]), voxels=0)
    try:
        atomic_write_json(out / f"{stem}_labels.json", summary)
    except OSError as err:  # no half result: the mask goes too
        mask_path.unlink(missing_ok=True)
        raise ValueError(f"cannot write {out / f'{stem}_labels.json'} ({err.strerror or type(err).__name__}).") from err
    return summary


def _check_labels(labels: Sequence[str]) -> None:
    if isinstance(labels, str):
        raise ValueError(f"labels should be a list of strings, got the string {labels[:80]!r}.")
    if not [label for label in labels if str(label).strip()]:
        raise ValueError("labels are empty: give at least one label.")


def _check_mask_path(out: str | Path, *inputs: str | Path | None) -> Path:
    """``out`` as a Path, refused before any work when it cannot take the mask: a wrong suffix, a folder, under a
    file, or one of the ``inputs`` (the image or prior mask would be overwritten)."""
    out = Path(out)
    if not str(out).endswith(MASK_SUFFIXES):
        raise ValueError(f"--out {out} should end in one of {', '.join(MASK_SUFFIXES)}.")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a mask file name.")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {out} cannot be written: {parent} is a file, not a folder.")
    for source in inputs:
        if source is not None and out.exists() and Path(source).exists() and out.samefile(source):
            raise ValueError(f"--out {out} is the input file {source}; write the mask elsewhere.")
    return out


def write_mask(mask: np.ndarray, like: MetaTensor, path: Path) -> Path:
    """Write a bool (or uint8 label) ``mask`` as uint8 NIfTI with the (RAS) affine of ``like`` or, for 2D, as a
    0/255 PNG whose pixel rows are the image's second index (as PIL reads PNGs back through MONAI), atomically."""
    data = mask.astype(np.uint8)
    if path.suffix == ".png":
        buffer = io.BytesIO()
        Image.fromarray((data.T > 0).astype(np.uint8) * 255).save(buffer, format="PNG")
        content = buffer.getvalue()
    else:
        affine = np.asarray(like.affine, dtype=np.float64)
        if affine.shape == (3, 3):  # a 2D image's affine: embed it in 3D
            eye = np.eye(4)
            affine = np.block([[affine[:2, :2], np.zeros((2, 1)), affine[:2, 2:]], [eye[2:3]], [eye[3:]]])
        image = nib.Nifti1Image(data, affine)
        content = gzip.compress(image.to_bytes()) if path.suffix == ".gz" else image.to_bytes()
    try:
        return atomic_write_bytes(path, content)
    except OSError as err:  # disk full, no permission: the temporary file is already gone
        raise ValueError(f"cannot write {path} ({err.strerror or type(err).__name__}).") from err
