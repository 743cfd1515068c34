"""The one MedP-CLIP model every task of the app shares: loaded once, reloaded when its checkpoint file changes
(after the trainer wrote a fine-tuned one), and used by one request at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from medpclip.inference import SlicePredictor
from medpclip.inference.views import NAMING_VIEWS
from medpclip.networks import load_checkpoint

__all__ = ["FINETUNED_NAME", "ModelService"]

FINETUNED_NAME = "medpclip.pt"  # the trainer's output in the app's model folder, preferred over the shipped weights


class ModelService:
    """Owns the model and its predictors.

    Inference runs under one lock: two forward passes at once would only share the same CPU cores and double the
    memory, while the server's event loop stays free for ``/info/`` and other requests (see ``lib/api.py``).
    """

    def __init__(
        self, model_dir: Path, checkpoint: Path | None, device: str = "cpu", naming_views: int = NAMING_VIEWS
    ) -> None:
        self.model_dir = model_dir
        self.naming_views = naming_views  # views of the slice a region is named from (SlicePredictor)
        self.fixed_checkpoint = checkpoint  # given in --conf checkpoint: never replaced by a fine-tuned one
        self.device = device
        self._lock = threading.Lock()
        self._loaded: tuple[Path, int] | None = None
        self._predictors: dict[str | None, SlicePredictor] = {}

    @property
    def checkpoint(self) -> Path:
        """The checkpoint in use: ``--conf checkpoint``, else the fine-tuned one, else the bundle's."""
        if self.fixed_checkpoint is not None:
            return self.fixed_checkpoint
        finetuned = self.model_dir / FINETUNED_NAME
        if finetuned.is_file():
            return finetuned
        from medpclip import bundle_dir

        return Path(bundle_dir()) / "models" / "model.pt"

    @contextmanager
    def predictor(self, modality: str | None = None) -> Iterator[SlicePredictor]:
        """Exclusive use of a predictor (one per modality, because label prompts depend on it) of the current
        checkpoint."""
        with self._lock, torch.inference_mode():
            self._reload_if_changed()
            if modality not in self._predictors:
                self._predictors[modality] = SlicePredictor(
                    self._model, modality=modality, naming_views=self.naming_views
                )
            yield self._predictors[modality]

    def load(self) -> None:
        """Load the model now (the server does at start-up, so the first click does not wait for it)."""
        with self._lock:
            self._reload_if_changed()

    def _reload_if_changed(self) -> None:
        path = self.checkpoint
        stamp = (path, path.stat().st_mtime_ns if path.is_file() else -1)
        if stamp != self._loaded:
            self._model = load_checkpoint(path, map_location=self.device).eval()
            self._predictors.clear()
            self._loaded = stamp
