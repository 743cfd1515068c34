"""Atomic file output: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_torch_save"]


def _atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return _atomic(path, lambda f: f.write(data))


def atomic_write_json(path: str | Path, obj: object) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def atomic_torch_save(obj: object, path: str | Path) -> Path:
    return _atomic(path, lambda f: torch.save(obj, f))
