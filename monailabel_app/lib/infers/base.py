"""What MedP-CLIP's infer tasks share: the model service, the request's image, errors as 4xx."""

from __future__ import annotations

from typing import Any

from monai.data import MetaTensor
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lib.params import invalid, optional, reported_as_422
from lib.service import ModelService
from medpclip.inference import load_image

__all__ = ["MedPCLIPTask"]


class MedPCLIPTask(InferTask):
    """A MONAI Label infer task backed by :class:`ModelService`; subclasses implement :meth:`run`."""

    def __init__(
        self,
        service: ModelService,
        type: InferType | str,
        labels: Any,
        description: str,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(type=type, labels=labels, dimension=3, description=description, config=config)
        self.service = service

    def is_valid(self) -> bool:
        return True

    def __call__(self, request: dict) -> tuple[str | None, dict]:
        with reported_as_422():
            return self.run(request)

    def run(self, request: dict) -> tuple[str | None, dict]:
        raise NotImplementedError

    @staticmethod
    def image(request: dict) -> MetaTensor:
        """The request's image (``[1, *spatial]`` in ``[0, 1]``) read as the CLI reads it."""
        path = request.get("image")
        if not isinstance(path, str) or not path:
            raise invalid("no image: give the id of an image in the datastore.")
        return load_image(path, request.get("modality"))

    @staticmethod
    def axis(request: dict) -> int:
        """The slicing axis of a volume (``axis``, default 2: axial)."""
        axis = request.get("axis", 2)
        if axis not in (0, 1, 2) or isinstance(axis, bool):
            raise invalid(f"axis should be 0, 1 or 2, got {axis!r}.")
        return axis

    @staticmethod
    def slice_index(request: dict) -> int | None:
        value = optional(request, "slice_index", lambda v: v)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise invalid(f"slice_index should be an integer, got {value!r}.")
        return value
