"""Fine-tunes the served model on the labels annotators saved in the datastore (short and CPU-friendly)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from lib.service import FINETUNED_NAME, ModelService
from medpclip.atomic import atomic_write_bytes, atomic_write_json
from medpclip.engines.training import TrainConfig, train

__all__ = ["FineTune"]

DEFAULTS = {"max_iterations": 20, "batch_size": 4, "num_regions": 4, "lr": 1e-4}
STATS_NAME = "train_stats.json"  # training runs in a subprocess of the server: the stats travel in a file


class FineTune(TrainTask):
    """Trains from the datastore's final labels (voxel values = the segmentation model's label indices), starting
    from the served checkpoint, and writes ``<model_dir>/medpclip.pt`` atomically; the infer tasks pick it up at
    their next request. Request fields: ``max_iterations``, ``batch_size``, ``num_regions``, ``lr``."""

    def __init__(self, service: ModelService, labels: dict[str, int]) -> None:
        super().__init__("Fine-tune MedP-CLIP on the saved labels")
        self.service = service
        self.labels = labels

    def config(self) -> dict:
        return dict(DEFAULTS)

    def stats(self) -> dict:
        path = self.service.model_dir / STATS_NAME
        return json.loads(path.read_text()) if path.is_file() else {}

    def __call__(self, request: dict, datastore: Datastore) -> dict:
        items = [{"image": item["image"], "label": item["label"]} for item in datastore.datalist()]
        if not items:
            raise ValueError("no saved labels to train from: save at least one final label first.")
        settings = {key: request.get(key, value) for key, value in DEFAULTS.items()}
        started = time.perf_counter()
        target = self.service.model_dir / FINETUNED_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix="finetune_") as work:
            datalist = Path(work) / "datalist.json"
            labels = {str(index): name for name, index in self.labels.items()}
            datalist.write_text(json.dumps({"labels": labels, "training": items}))
            config = TrainConfig(
                out_dir=str(Path(work) / "run"),
                train_datalists=[str(datalist)],
                init_checkpoint=str(self.service.checkpoint),
                iterations=int(settings["max_iterations"]),
                batch_size=int(settings["batch_size"]),
                num_regions=int(settings["num_regions"]),
                lr=float(settings["lr"]),
                warmup=1,
                eval_every=int(settings["max_iterations"]),
                checkpoint_every=int(settings["max_iterations"]),
                modality_batch=0,
                num_workers=0,
            )
            trained = train(config)
            atomic_write_bytes(target, trained.read_bytes())
        stats = {
            "images": len(items),
            "iterations": config.iterations,
            "seconds": round(time.perf_counter() - started, 1),
            "checkpoint": str(target),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        atomic_write_json(self.service.model_dir / STATS_NAME, stats)
        return stats
