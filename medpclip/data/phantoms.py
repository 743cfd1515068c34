"""Deterministic synthetic 2D phantoms: a body outline with organs and a lesion, with their label map.

Used for the built-in demo image and for unit tests; never as the only evidence for a claim.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PHANTOM_LABELS", "phantom_slice"]

PHANTOM_LABELS = {0: "background", 1: "body", 2: "liver", 3: "left kidney", 4: "right kidney", 5: "tumour"}


def phantom_slice(size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An axial abdomen-like slice in ``[0, 1]`` and its label map (see :data:`PHANTOM_LABELS`).

    Patient right is on image left (radiological convention), so the liver and the right kidney lie at small ``j``.

    Returns:
        image ``[size, size]`` float32, labels ``[size, size]`` int64.
    """
    rng = np.random.default_rng(seed)
    ii, jj = np.mgrid[0:size, 0:size] / size
    jitter = lambda scale=0.02: rng.uniform(-scale, scale)  # noqa: E731 - tiny local helper

    def ellipse(ci: float, cj: float, ri: float, rj: float) -> np.ndarray:
        return ((ii - ci - jitter()) / ri) ** 2 + ((jj - cj - jitter()) / rj) ** 2 <= 1

    labels = np.zeros((size, size), dtype=np.int64)
    image = np.zeros((size, size), dtype=np.float32)
    for label, mask, value in (
        (1, ellipse(0.5, 0.5, 0.38, 0.46), 0.35),
        (2, ellipse(0.42, 0.3, 0.18, 0.15), 0.6),
        (4, ellipse(0.62, 0.32, 0.07, 0.05), 0.8),
        (3, ellipse(0.62, 0.68, 0.07, 0.05), 0.8),
    ):
        labels[mask] = label
        image[mask] = value
    tumour = ellipse(0.4, 0.3, 0.05, 0.05) & (labels == 2)
    labels[tumour] = 5
    image[tumour] = 0.3
    image += rng.normal(0, 0.03, image.shape).astype(np.float32)
    return np.clip(image, 0, 1), labels
