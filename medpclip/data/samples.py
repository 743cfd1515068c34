"""Sample cases read from installed offline packages: the LiTS CT case (``liver-ct-segmentation-package``, LiTS
challenge data, Bilic et al. 2023, non-commercial licence: tests and demo only)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

__all__ = ["LITS_LABELS", "lits_affine", "lits_arrays", "package_folder"]

LITS_LABELS = {"1": "liver", "2": "tumor"}


def package_folder(module: str) -> Path:
    """Folder of an installed package, found without importing it.

    Raises:
        ModuleNotFoundError: if the package is not installed.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package '{module}' is not installed (pip install -e '.[data]', see the Makefile)")
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=1)
def lits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """LiTS case 117 as (CT in HU float32, labels uint8), both ``[128, 128, 128]`` and reoriented to RAS (read
    once per process; do not modify the arrays).

    The MRC arrays run (patient left, posterior, superior) along axes (0, 1, 2): axial slices lie along the last
    axis, the liver is at low axis-0 indices. Flipping axes 0 and 1 gives RAS with the axial axis last.
    """
    import mrcfile

    folder = package_folder("liver_ct_segmentation_package") / "data"
    with mrcfile.open(folder / "img_117.mrc", permissive=True) as mrc:
        ct = np.asarray(mrc.data, dtype=np.float32)
    with mrcfile.open(folder / "lab_117.mrc", permissive=True) as mrc:
        label = np.asarray(mrc.data)
    if ct.shape != label.shape or ct.ndim != 3:
        raise ValueError(f"LiTS image {ct.shape} and label {label.shape} should be equal 3D shapes")
    if not set(np.unique(label).tolist()) <= {0, 1, 2}:
        raise ValueError("LiTS label values should be 0, 1, 2")
    return np.ascontiguousarray(ct[::-1, ::-1]), np.ascontiguousarray(label[::-1, ::-1].astype(np.uint8))


def lits_affine(shape: tuple[int, ...]) -> np.ndarray:
    """``[4, 4]`` RAS affine with 1 mm voxels (assumed: the MRC header has none), centred on the origin."""
    affine = np.eye(4)
    affine[:3, 3] = -(np.asarray(shape[:3]) - 1) / 2.0
    return affine
