"""``--conf models medpclip``: MedP-CLIP's infer tasks and trainer, sharing one model.

Options (``--conf key value``):

* ``checkpoint``: a MedP-CLIP checkpoint (default: the fine-tuned ``model/medpclip.pt`` when training made one,
  else the bundle's ``models/model.pt``); loaded with ``weights_only=True``, nothing is downloaded;
* ``labels``: comma-separated structure names offered to the viewer's point prompts (default below), indexed 1..n;
* ``classes``: comma-separated default labels of zero-shot classification (default: the modality families);
* ``device``: ``cpu`` (default) or ``cuda``;
* ``naming_views``: how many slightly moved views of the slice a region is named from (default 16; 1 is faster,
  see ``medpclip.inference.views``).
"""

from __future__ import annotations

from pathlib import Path

from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lib.infers import InteractiveSegmentation, RegionLabelling, ZeroShotClassification
from lib.service import ModelService
from lib.trainers import FineTune
from medpclip.data.intensity import MODALITY_CLASSES
from medpclip.inference.views import NAMING_VIEWS
from medpclip.knowledge import default_knowledge_base

__all__ = ["MedPCLIPConfig"]

SEGMENTATION_LABELS = (
    "liver",
    "liver tumour",
    "spleen",
    "left kidney",
    "right kidney",
    "pancreas",
    "stomach",
    "aorta",
    "urinary bladder",
    "brain",
)


class MedPCLIPConfig(TaskConfig):
    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: object, **kwargs: object) -> None:
        super().init(name, model_dir, conf, planner, **kwargs)
        checkpoint = Path(conf["checkpoint"]) if conf.get("checkpoint") else None
        views = conf.get("naming_views", str(NAMING_VIEWS))
        if not views.strip().isdigit() or int(views) < 1:
            raise ValueError(f"--conf naming_views should be a whole number of at least 1, got {views!r}.")
        self.service = ModelService(Path(model_dir), checkpoint, conf.get("device", "cpu"), int(views))
        names = _names(conf.get("labels")) or list(SEGMENTATION_LABELS)
        self.labels = {label: index for index, label in enumerate(names, start=1)}
        self.classes = _names(conf.get("classes")) or list(MODALITY_CLASSES.values())
        anatomy = [e for e in default_knowledge_base() if e.kind in ("structure", "lesion")]
        self.anatomy = sorted({e.name for e in anatomy})

    def infer(self) -> dict[str, InferTask]:
        return {
            # OHIF's point-prompt panel sends points/point_labels/label_prompt to vista3d models
            f"{self.name}_seg": InteractiveSegmentation(self.service, self.labels, "vista3d"),
            # 3D Slicer's and OHIF's deepgrow tools send foreground/background clicks
            f"{self.name}_deepgrow": InteractiveSegmentation(self.service, self.labels, InferType.DEEPGROW),
            f"{self.name}_classify": ZeroShotClassification(self.service, self.classes),
            f"{self.name}_region": RegionLabelling(self.service, self.anatomy),
        }

    def trainer(self) -> FineTune:
        return FineTune(self.service, self.labels)


def _names(value: str | None) -> list[str]:
    return list(dict.fromkeys(n.strip() for n in (value or "").split(",") if n.strip()))
