"""Interactive segmentation: clicks (and an optional box) on one slice, propagated through the volume."""

from __future__ import annotations

import os
import tempfile

import nibabel as nib
import nrrd
import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.infers.base import MedPCLIPTask
from lib.params import clicks, invalid, number_list, optional
from lib.service import ModelService
from medpclip.inference import segment_volume

__all__ = ["InteractiveSegmentation"]


class InteractiveSegmentation(MedPCLIPTask):
    """Segments the structure the user points at.

    Request fields (voxel indices of the image as MONAI Label loads it):

    * ``points`` ``[[i, j, k], ...]`` + ``point_labels`` (1/0) + ``label_prompt`` ``[index]``: what OHIF's point
      prompts send to a ``vista3d`` model; or ``foreground`` / ``background``: what 3D Slicer sends to a
      ``deepgrow`` model;
    * ``box`` ``[i0, j0, i1, j1]`` on the slice of the clicks (or ``slice_index``), optional;
    * ``axis`` (default 2), ``propagate`` (default true), ``modality`` (e.g. ``"CT"``).

    The result is a label of the image's geometry whose voxels carry the prompted label's index (1 without a
    ``label_prompt``): NIfTI, or NRRD when the request says ``result_extension: ".nrrd"`` (as OHIF does; with
    ``result_compress`` for gzip encoding), and JSON ``{"label_names", "slice", "voxels", "slices",
    "dropped_clicks"}``.
    """

    def __init__(self, service: ModelService, labels: dict[str, int], type: InferType | str) -> None:
        style = "points/point_labels/label_prompt" if type == "vista3d" else "foreground/background clicks"
        super().__init__(
            service,
            type=type,
            labels=labels,
            description=f"MedP-CLIP interactive segmentation ({style}; optional box), propagated through a volume",
        )

    def run(self, request: dict) -> tuple[str | None, dict]:
        volume = self.image(request)
        axis = self.axis(request)
        given = clicks(request, volume.ndim - 1, axis)
        box = optional(request, "box", lambda v: number_list(v, "box", 4))
        if not given.positives and box is None:
            raise invalid("MedP-CLIP segments what you point at: place at least one foreground point or a box.")
        name, value = self._label(request)
        as_nrrd = request.get("result_extension") == ".nrrd"
        # an uncompressed NIfTI when it is only read back once to become NRRD: no gzip round trip per click
        fd, out = tempfile.mkstemp(suffix=".nii" if as_nrrd else ".nii.gz", prefix="medpclip_")
        os.close(fd)
        try:
            with self.service.predictor(request.get("modality")) as predictor:
                summary = segment_volume(
                    predictor,
                    volume,
                    out,
                    points=given.positives,
                    negatives=given.negatives,
                    box=box,
                    axis=axis,
                    slice_index=self.slice_index(request),
                    propagate_3d=bool(request.get("propagate", True)),
                    value=value,
                )
        except BaseException:
            os.unlink(out)
            raise
        summary.pop("mask")
        if as_nrrd:
            out = _as_nrrd(out, compress=bool(request.get("result_compress", False)))
        return out, {"label_names": {name: value}, "dropped_clicks": given.dropped, **summary}

    def _label(self, request: dict) -> tuple[str, int]:
        """``(name, index)`` of the ``label_prompt`` (OHIF's selected class), else the first configured label."""
        prompt = request.get("label_prompt")
        if not prompt:
            name = next(iter(self.labels))
            return name, self.labels[name]
        index = number_list(prompt, "label_prompt")[0]
        names = [name for name, value in self.labels.items() if value == index]
        if not names:
            known = sorted(self.labels.values())
            raise invalid(f"label_prompt {int(index)} is not one of this model's label indices {known}.")
        return names[0], int(index)


def _as_nrrd(nifti: str, compress: bool) -> str:
    """The NIfTI label rewritten as NRRD in the same voxel order (first index fastest), which OHIF's MONAI Label
    panel parses; the NIfTI is removed."""
    data = np.asarray(nib.load(nifti).dataobj, dtype=np.uint8)
    fd, out = tempfile.mkstemp(suffix=".nrrd", prefix="medpclip_")
    os.close(fd)
    try:
        nrrd.write(out, data, {"encoding": "gzip" if compress else "raw"}, index_order="F")
    except BaseException:
        os.unlink(out)
        raise
    finally:
        os.unlink(nifti)
    return out
