"""Simulated radiographs and ultrasound images from the training CT and MR volumes, for image-level modality
training: the offline data hold one real radiograph and two readable ultrasound images, too few to learn the
families from.

* Radiograph: a digitally reconstructed radiograph (DRR), the line integral of linear attenuation through a CT
  volume along one axis (Siddon, Med. Phys. 12(2), 1985, computes the same integral ray by ray), log-compressed as
  a detector reading, bone bright: MONOCHROME1 radiographs reach the model inverted back by the reader (ITK).
* Ultrasound: a sector scan of a CT or MR slice: echoes from tissue edges and intensity, multiplicative Rayleigh
  speckle smoothed along the beam, depth attenuation, log compression, black outside the fan (after the simple
  CT-to-ultrasound simulations of Wein et al., Med. Image Anal. 12(5), 2008).

Both are approximations that teach the cues of each family (projection with bright bone; fan, speckle, dark
background), not physical simulators.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import LoadImage, ScaleIntensityRangePercentiles

from medpclip.data.intensity import ModalityIntensityd, modality_family

__all__ = ["SyntheticModalities", "simulated_radiograph", "simulated_ultrasound"]

MU_WATER_PER_MM = 0.02  # linear attenuation of water at diagnostic energies (~70 keV)


def simulated_radiograph(volume_hu: np.ndarray, rng: np.random.Generator, size: int = 128) -> torch.Tensor:
    """A DRR of a CT volume ``[X, Y, Z]`` in Hounsfield units (1 mm voxels assumed) along a random axis, in
    ``[0, 1]``: ``[1, size, size]``."""
    mu = np.clip(volume_hu + 1000.0, 0.0, None) / 1000.0 * MU_WATER_PER_MM
    path = mu.sum(axis=int(rng.integers(3)))  # line integral: log(I0 / I)
    path = path ** rng.uniform(0.7, 1.3)  # detector and display curves differ
    image = np.rot90(_unit(path), int(rng.integers(4)))  # radiographs are stored in any orientation
    return _square(image, rng, size)


def simulated_ultrasound(slice01: np.ndarray, rng: np.random.Generator, size: int = 128) -> torch.Tensor:
    """A sector ultrasound image of a tissue slice ``[H, W]`` in ``[0, 1]``: ``[1, size, size]`` in ``[0, 1]``."""
    tissue = _resize(slice01, size)
    gy, gx = np.gradient(tissue)
    echo = 0.3 * tissue + 3.0 * np.hypot(gx, gy) + 0.05
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    apex_y, apex_x = -rng.uniform(0.0, 0.15) * size, size / 2 + rng.uniform(-0.05, 0.05) * size
    radius = np.hypot(ys - apex_y, xs - apex_x)
    angle = np.arctan2(xs - apex_x, ys - apex_y)
    half_angle = np.deg2rad(rng.uniform(30, 45))
    near, far = rng.uniform(0.02, 0.1) * size, rng.uniform(0.8, 1.05) * size
    fan = (np.abs(angle) <= half_angle) & (radius >= near) & (radius <= far)
    speckle = rng.rayleigh(1.0, (size, size))
    speckle = F.avg_pool2d(torch.from_numpy(speckle)[None, None], (3, 1), 1, (1, 0))[0, 0].numpy()  # along the beam
    attenuation = np.exp(-rng.uniform(0.5, 2.0) * radius / size)
    image = np.log1p(20.0 * echo * speckle * attenuation) * fan
    return torch.from_numpy(_unit(image)).float()[None]


# the scaling ModalityIntensityd gives real radiographs and ultrasound images
_PERCENTILES = ScaleIntensityRangePercentiles(0.5, 99.5, b_min=0.0, b_max=1.0, clip=True)


def _unit(image: np.ndarray) -> np.ndarray:
    """Percentile scaling to ``[0, 1]``, as real radiographs and ultrasound images are scaled for the model."""
    return np.asarray(_PERCENTILES(image), dtype=np.float64)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)[0, 0].double().numpy()


def _square(image: np.ndarray, rng: np.random.Generator, size: int) -> torch.Tensor:
    """Pad to a square on a background drawn like a detector's (black or white), then resize: ``[1, size, size]``."""
    h, w = image.shape
    side = max(h, w)
    canvas = np.full((side, side), float(rng.random() < 0.5))
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = image
    return torch.from_numpy(_resize(canvas, size)).float()[None]


class SyntheticModalities:
    """``(family, size) -> [1, size, size]`` simulated images (``"XR"`` or ``"US"``) from the 3D volumes of
    training datalist items: radiographs from the CT volumes, ultrasound from slices of every volume.

    Each file is read once (items are often slabs of one volume). Raises ``ValueError`` when no item is a 3D volume.
    """

    FAMILIES = ("XR", "US")

    def __init__(self, items: Sequence[dict], seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        load, scale = LoadImage(image_only=True), ModalityIntensityd(keys="image")
        self.ct_volumes: list[np.ndarray] = []
        self.tissue: list[np.ndarray] = []
        for path, modality in {i["image"]: i.get("modality") for i in items}.items():
            volume = load(path)
            if volume.ndim != 3:
                continue
            if modality_family(modality) == "CT":
                self.ct_volumes.append(np.asarray(volume, dtype=np.float32))
            tissue = scale({"image": volume[None], "modality": modality})["image"][0]
            self.tissue.append(np.asarray(tissue, dtype=np.float32))
        if not self.tissue:
            raise ValueError("synthetic modality images need 3D training volumes; the training items have none.")

    def __call__(self, family: str, size: int) -> torch.Tensor:
        if family == "XR" and self.ct_volumes:
            return simulated_radiograph(self.ct_volumes[self.rng.integers(len(self.ct_volumes))], self.rng, size)
        volume = self.tissue[self.rng.integers(len(self.tissue))]
        axis = int(self.rng.integers(3))
        index = int(self.rng.uniform(0.25, 0.75) * volume.shape[axis])  # through the anatomy, not its edge
        return simulated_ultrasound(np.take(volume, index, axis=axis), self.rng, size)
