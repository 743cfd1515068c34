"""MedP-CLIP's MONAI Label app: interactive segmentation, zero-shot classification and region labelling for OHIF
and 3D Slicer, and fine-tuning from saved labels.

    monailabel start_server --app monailabel_app --studies <folder or DICOMweb URL> --conf models medpclip

Nothing is downloaded: the weights are the bundle's (or ``--conf checkpoint PATH``), DICOM SEG is written with
pydicom-seg, and SAM2 is not used. See ``docs/monailabel.md``.
"""

from __future__ import annotations

import logging
import os

import monailabel.app
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

import medpclip
from lib.api import bind_loopback_by_default, install_api_guards
from lib.configs import MedPCLIPConfig
from lib.datastore import with_safe_ids
from lib.dicom_seg import write_seg_with_pydicom_seg

logger = logging.getLogger(__name__)

CONFIGS = {"medpclip": MedPCLIPConfig}


class MedPCLIPApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        names = [n.strip() for n in conf.get("models", "medpclip").split(",") if n.strip()]
        names = list(CONFIGS) if names == ["all"] else names
        unknown = [n for n in names if n not in CONFIGS]
        if unknown or not names:
            raise ValueError(f"--conf models: unknown {unknown or names}; available: {', '.join(CONFIGS)} or all.")
        model_dir = conf.get("model_dir") or os.path.join(app_dir, "model")
        self.configs = {}
        for name in names:
            config = CONFIGS[name]()
            config.init(name, model_dir, conf, None)
            self.configs[name] = config
        write_seg_with_pydicom_seg()
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="MedP-CLIP",
            description="Region-aware medical vision-language model: click, segment, name",
            version=medpclip.__version__,
            labels=list(next(iter(self.configs.values())).labels),  # names in index order: OHIF appends to this list
        )

    def init_datastore(self) -> Datastore:
        return with_safe_ids(super().init_datastore())

    def init_infers(self) -> dict[str, InferTask]:
        return {name: task for config in self.configs.values() for name, task in config.infer().items()}

    def init_trainers(self) -> dict[str, TrainTask]:
        return {name: config.trainer() for name, config in self.configs.items()}

    def model_names(self) -> list[str]:
        return list(self._infers)

    def _download_dcmqi_tools(self) -> None:
        """MONAI Label fetches dcmqi from GitHub for DICOMweb datastores; we write DICOM SEG with pydicom-seg."""

    def on_init_complete(self) -> None:
        super().on_init_complete()
        if self._server_mode:
            install_api_guards(monailabel.app.app, self)
            bind_loopback_by_default()
            for config in self.configs.values():
                config.service.load()
                logger.info(f"MedP-CLIP '{config.name}': weights from {config.service.checkpoint}")
