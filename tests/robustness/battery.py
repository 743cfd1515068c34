"""Helpers of the robustness battery: damaged and odd files built on the fly, and the assertions every case makes
(one line, exit code 2, nothing on stdout, no traceback, no output or temporary file). Fixtures are in conftest.py.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

SHAPE_2D = (40, 36)
SHAPE_3D = (32, 28, 5)


# --------------------------------------------------------------------------------------------------- writers


def write_nifti(path: Path, data: np.ndarray, **kwargs: object) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4), **kwargs), path)
    return path


def nifti_header_only(path: Path, shape: tuple[int, ...], dtype: type = np.float32, voxels: int = 16) -> Path:
    """A ``.nii`` whose header declares ``shape`` followed by only ``voxels`` voxels of data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * voxels * np.dtype(dtype).itemsize)
    return path


def png_bytes(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG signature and an IHDR chunk declaring ``width x height`` grey pixels, and no pixel data."""
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    return path


# ------------------------------------------------------------------------------------------------ assertions


def assert_one_line_error(code: int, out: str, err: str, fragment: str) -> str:
    """The CLI contract: exit code 2, nothing on stdout, one stderr line ``medpclip <command>: error: ...`` that
    names the problem, no traceback."""
    assert code == 2, (code, out, err)
    assert out == "", f"nothing on stdout on error: {out!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"stderr should be one line: {err!r}"
    assert lines[0].startswith("medpclip ") and ": error: " in lines[0], lines[0]
    assert "Traceback" not in err
    assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def assert_no_temporaries(folder: Path) -> None:
    left = [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith("tmp")]
    assert not left, f"temporary files left behind: {left}"
