"""Zero-shot classification of a whole image, and region labelling ("what is this?") of a click, box or mask."""

from __future__ import annotations

from collections.abc import Sequence

from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.infers.base import MedPCLIPTask
from lib.params import clicks, invalid, label_list, number_list, optional
from lib.service import ModelService
from medpclip.inference import classify_volume, load_mask

__all__ = ["RegionLabelling", "ZeroShotClassification"]


class ZeroShotClassification(MedPCLIPTask):
    """Ranks free-text ``labels`` (a list or a comma-separated string; default: the configured vocabulary) for the
    whole image: the middle slice of a volume, or ``slice_index`` along ``axis``. Returns
    ``{"labels": [{"label", "probability"}, ...], "slice"}`` most probable first, as ``medpclip classify`` does."""

    def __init__(self, service: ModelService, vocabulary: Sequence[str]) -> None:
        super().__init__(
            service,
            type=InferType.CLASSIFICATION,
            labels=list(vocabulary),
            description="MedP-CLIP zero-shot image classification (params.labels: free text)",
        )

    def run(self, request: dict) -> tuple[str | None, dict]:
        labels = label_list(request.get("labels"), self.labels)
        volume = self.image(request)
        with self.service.predictor(request.get("modality")) as predictor:
            result = classify_volume(
                predictor, volume, labels, axis=self.axis(request), slice_index=self.slice_index(request)
            )
        return None, result


class RegionLabelling(MedPCLIPTask):
    """Names a region: clicks (``points``/``point_labels`` or ``foreground``/``background``), a ``box`` on their
    slice, or a mask uploaded as the request's label file. Ranks ``labels`` (default: the anatomy of the knowledge
    base) and returns the ``top_k`` (default: all given labels, 10 of the default vocabulary) as
    ``{"labels": [...], "slice"}``."""

    def __init__(self, service: ModelService, vocabulary: Sequence[str]) -> None:
        super().__init__(
            service,
            type=InferType.CLASSIFICATION,
            labels=list(vocabulary),
            description="MedP-CLIP region labelling: a click, box or mask -> ranked names",
        )

    def run(self, request: dict) -> tuple[str | None, dict]:
        labels = label_list(request.get("labels"), self.labels)
        top_k = request.get("top_k", len(labels) if "labels" in request else 10)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise invalid(f"top_k should be a positive integer, got {top_k!r}.")
        volume = self.image(request)
        axis = self.axis(request)
        given = clicks(request, volume.ndim - 1, axis)
        box = optional(request, "box", lambda v: number_list(v, "box", 4))
        region = load_mask(request["label"]) if request.get("label") else None
        if not given and box is None and region is None:
            raise invalid("region labelling needs a region: give points, a box or a mask (the label file).")
        with self.service.predictor(request.get("modality")) as predictor:
            result = classify_volume(
                predictor,
                volume,
                labels,
                points=given.positives,
                negatives=given.negatives,
                box=box,
                region=region,
                axis=axis,
                slice_index=self.slice_index(request),
            )
        return None, {**result, "labels": result["labels"][:top_k]}
