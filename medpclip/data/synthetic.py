"""Simulated radiographs and ultrasound images from the training CT and MR volumes, for image-level modality
training: the offline data hold one real radiograph and three ultrasound frames, too few to learn the families from.

* Radiograph: a digitally reconstructed radiograph (DRR), the line integral of linear attenuation through a CT
  volume along one axis (Siddon, Med. Phys. 12(2), 1985, computes the same integral ray by ray), log-compressed as
  a detector reading, bone bright: MONOCHROME1 radiographs reach the model inverted back by the reader (ITK).
* Ultrasound: a sector, convex or linear scan of part of a CT or MR slice (what a probe on the skin sees): echoes
  from tissue edges and intensity, multiplicative Rayleigh speckle smoothed along the beam, depth attenuation, log
  compression, black outside the field of view (after the simple CT-to-ultrasound simulations of Wein et al., Med.
  Image Anal. 12(5), 2008), on a scanner's black screen with burned-in text, a depth ruler and a grey-scale bar (as
  clinical frames carry them, the training frames US1_UNCR and ALOKA among them), sometimes a colour-flow box, in any
  orientation of the pixel grid.

Both are approximations that teach the cues of each family (projection with bright bone; speckle in a field of view
on a dark, annotated screen), not physical simulators.
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
    """A B-mode ultrasound frame of a tissue slice ``[H, W]`` in ``[0, 1]``, as a scanner exports it:
    ``[1, size, size]`` in ``[0, 1]``.

    The scan (a sector, convex or linear probe's field of view) fills part of a black screen that carries burned-in
    annotations, sometimes with a colour-flow box, and the frame comes in any of the eight orientations of its grid:
    ITK reads a DICOM frame's columns as its first axis, so real frames reach the model transposed, and exporters
    and viewers store frames in other orientations too.
    """
    scan_size = int(rng.integers(size * 11 // 20, size + 1))
    scan = _scan(_resize(_probe_window(slice01, rng), scan_size), rng)
    if rng.random() < 0.3:
        _colour_flow(scan, rng)
    frame = np.zeros((size, size))
    top, left = rng.integers(size - scan_size + 1, size=2)
    frame[top : top + scan_size, left : left + scan_size] = scan
    _burn_in(frame, rng)
    frame = np.rot90(frame, int(rng.integers(4)))
    frame = frame.T if rng.random() < 0.5 else frame
    return torch.from_numpy(_unit(frame)).float()[None]


def _probe_window(slice01: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The part of a slice ``[H, W]`` a probe on the skin images: a square of 30–60 % of the slice's shorter side
    centred on a tissue voxel (intensity above 0.05), so the field of view shows anatomy, not the air around the
    body. The whole slice when it holds no tissue."""
    tissue = np.argwhere(slice01 > 0.05)
    if not len(tissue):
        return slice01
    side = max(2, int(min(slice01.shape) * rng.uniform(0.3, 0.6)))
    centre = tissue[rng.integers(len(tissue))]
    top, left = (np.clip(centre - side // 2, 0, np.array(slice01.shape) - side)).astype(int)
    return slice01[top : top + side, left : left + side]


def _scan(tissue: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Echoes of ``tissue`` ``[S, S]`` seen by a phased-array (sector), convex (curved top) or linear (rectangle)
    probe at the top, beams running down the rows: tissue intensity and edges, multiplicative Rayleigh speckle
    smoothed along the beam, attenuation with depth, log compression, black outside the field of view."""
    size = tissue.shape[0]
    gy, gx = np.gradient(tissue)
    echo = 0.3 * tissue + 3.0 * np.hypot(gx, gy) + 0.05
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    probe = rng.choice(["sector", "convex", "linear"])
    if probe == "linear":
        depth, view = ys, np.abs(xs - size / 2) <= rng.uniform(0.3, 0.45) * size
    else:  # the apex lies above the frame: just above for a sector, far above for a convex probe's curved face
        apex = rng.uniform(0.0, 0.15) * size if probe == "sector" else rng.uniform(0.3, 0.8) * size
        half_angle = np.deg2rad(rng.uniform(30, 45) if probe == "sector" else rng.uniform(20, 35))
        depth = np.hypot(ys + apex, xs - size / 2) - apex
        view = np.abs(np.arctan2(xs - size / 2, ys + apex)) <= half_angle
    view &= (depth >= rng.uniform(0.0, 0.1) * size) & (depth <= rng.uniform(0.8, 1.05) * size)
    speckle = rng.rayleigh(1.0, (size, size))
    speckle = F.avg_pool2d(torch.from_numpy(speckle)[None, None], (3, 1), 1, (1, 0))[0, 0].numpy()  # along the beam
    attenuation = np.exp(-rng.uniform(0.5, 2.0) * depth / size)
    gain = rng.uniform(1.0, 2.5)  # scanners' dynamic range and gain differ; most show tissue dark, echoes bright
    return _unit(np.log1p(20.0 * echo * speckle * attenuation) * view) ** gain


def _colour_flow(scan: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a colour-flow (Doppler) box into ``scan`` ``[S, S]`` in place, as the grey reading shows one: an outlined
    box over the tissue whose blood-flow blobs are flat colour, not speckle."""
    size = scan.shape[0]
    h, w = (rng.uniform(0.25, 0.5, size=2) * size).astype(int) + 2
    top, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    ys, xs = np.mgrid[0:h, 0:w]
    blobs = np.zeros((h, w))
    for _ in range(int(rng.integers(1, 4))):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.1, 0.3) * min(h, w) + 1
        blobs = np.maximum(blobs, np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * r**2)))
    box = scan[top : top + h, left : left + w]
    box[blobs > 0.5] = rng.uniform(0.4, 1.0)
    box[[0, -1], :] = box[:, [0, -1]] = rng.uniform(0.5, 1.0)  # the box outline


def _burn_in(frame: np.ndarray, rng: np.random.Generator) -> None:
    """Burn a scanner's screen annotations into ``frame`` ``[S, S]`` in place: lines of text (rows of small glyphs),
    a depth ruler (a line of dots) and sometimes a grey-scale bar."""
    size = frame.shape[0]
    glyph = max(2, round(size * rng.uniform(0.015, 0.035)))
    for _ in range(int(rng.integers(2, 9))):  # text lines
        row, col = rng.integers(0, size - glyph, size=2)
        for _ in range(int(rng.integers(3, 16))):
            if col + glyph > size:
                break
            region = frame[row : row + glyph, col : col + glyph - 1]
            np.maximum(region, (rng.random(region.shape) < 0.5) * rng.uniform(0.6, 1.0), out=region)
            col += glyph
    step, col = int(rng.integers(max(3, size // 25), max(4, size // 10))), int(rng.integers(size))
    frame[int(rng.integers(size // 4)) : size - int(rng.integers(size // 4)) : step, col] = rng.uniform(0.5, 1.0)
    if rng.random() < 0.5:  # grey-scale bar
        height, width = int(size * rng.uniform(0.2, 0.5)), int(rng.integers(2, 5))
        row, col = rng.integers(0, size - height), rng.integers(0, size - width)
        frame[row : row + height, col : col + width] = np.linspace(1.0, 0.0, height)[:, None]


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
