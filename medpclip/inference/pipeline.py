"""File in, files out: segment the prompted structure of an image and rank labels for it (the bundle's
``inference.json`` and the CLI build on this)."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data import MetaTensor

from medpclip.atomic import atomic_write_bytes, atomic_write_json
from medpclip.inference.images import load_image, slice_of
from medpclip.inference.predictor import SlicePredictor
from medpclip.networks.model import MedPCLIP

__all__ = ["segment_and_classify"]


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
    """Segment and classify the prompted region of ``image`` and write ``<stem>_mask.nii.gz`` (the image's
    geometry) and ``<stem>_labels.json`` into ``output_dir``. Returns the JSON summary.

    Coordinates are voxel indices of the image as MONAI ``LoadImage`` returns it: ``(i, j)`` for a 2D image,
    ``(i, j, k)`` for a volume, where the coordinate along ``axis`` picks the slice (every click and the box must
    lie on one slice; the box is given as ``(i0, j0, i1, j1)`` of that slice). Without any click or box the whole
    image (the middle slice of a volume) is classified and no structure is segmented.
    """
    volume = load_image(image, modality)
    spatial = tuple(volume.shape[1:])
    index, points, negatives = _slice_clicks(spatial, axis, points, negatives)
    if box is not None and len(box) != 4:
        raise ValueError(f"box should be 4 numbers i0,j0,i1,j1, got {len(box)}.")
    predictor = SlicePredictor(model, modality=modality)
    predictor.set_image(slice_of(volume, axis, index))
    prompt = {"points": points, "negatives": negatives, "box": box}
    summary: dict = {"image": str(image), "shape": list(spatial), "slice": None if len(spatial) == 2 else index}
    encoding = predictor.encode(predictor.prompts(**prompt))  # once for both the ranking and the mask
    summary["labels"] = predictor.rank(encoding, labels) if labels else []
    mask = np.zeros(spatial, np.uint8)
    if points or box is not None:
        region = (predictor.decode(encoding) > 0).numpy().astype(np.uint8)
        if len(spatial) == 2:
            mask[:] = region
        else:
            np.moveaxis(mask, axis, 0)[index] = region
    summary["mask_voxels"] = int(mask.sum())
    out = Path(output_dir)
    stem = Path(str(image).rstrip("/")).name.split(".")[0]
    summary["mask"] = str(_write_mask(mask, volume, out / f"{stem}_mask.nii.gz"))
    atomic_write_json(out / f"{stem}_labels.json", summary)
    return summary


def _slice_clicks(
    spatial: tuple[int, ...], axis: int, points: Sequence[Sequence[float]], negatives: Sequence[Sequence[float]]
) -> tuple[int | None, list[list[float]], list[list[float]]]:
    """The slice the clicks lie on (the middle one without clicks) and the clicks as 2D ``(i, j)`` of it."""
    clicks = [list(map(float, c)) for c in (*points, *negatives)]
    if any(len(c) != len(spatial) for c in clicks):
        raise ValueError(f"clicks need {len(spatial)} coordinates for an image of shape {list(spatial)}.")
    if len(spatial) == 2:
        return None, clicks[: len(points)], clicks[len(points) :]
    if axis not in (0, 1, 2):
        raise ValueError(f"slice axis should be 0, 1 or 2, got {axis}.")
    indices = {round(c[axis]) for c in clicks}
    if len(indices) > 1:
        raise ValueError(f"clicks lie on different slices along axis {axis}: {sorted(indices)}; give one slice.")
    index = indices.pop() if indices else spatial[axis] // 2
    if not 0 <= index < spatial[axis]:
        raise ValueError(f"click slice {index} lies outside axis {axis} of {spatial[axis]} voxels.")
    planar = [[v for d, v in enumerate(c) if d != axis] for c in clicks]
    return index, planar[: len(points)], planar[len(points) :]


def _write_mask(mask: np.ndarray, like: MetaTensor, path: Path) -> Path:
    """Write ``mask`` as NIfTI with the (RAS) affine of ``like``, atomically (temporary file + rename)."""
    affine = np.asarray(like.affine, dtype=np.float64)
    if affine.shape == (3, 3):  # a 2D image's affine: embed it in 3D
        affine = np.block([[affine[:2, :2], np.zeros((2, 1)), affine[:2, 2:]], [np.eye(4)[2:3]], [np.eye(4)[3:]]])
    image = nib.Nifti1Image(mask, affine)
    return atomic_write_bytes(path, image.to_bytes() if path.suffix != ".gz" else gzip.compress(image.to_bytes()))
