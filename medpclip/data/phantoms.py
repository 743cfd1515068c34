"""Deterministic synthetic phantoms: organs and lesions of controlled shape, size, intensity and location,
in 2D or 3D, with their label map and a caption per object.

For unit tests, the built-in demo image and controlled experiments; never the only evidence for a claim.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PHANTOM_LABELS", "PhantomObject", "Phantom", "render_phantom", "random_phantom", "phantom_slice"]

PHANTOM_LABELS = {0: "background", 1: "body", 2: "liver", 3: "left kidney", 4: "right kidney", 5: "tumour"}


@dataclass(frozen=True)
class PhantomObject:
    """One object: ``centre`` and ``radii`` as fractions of the image side (per spatial dim), ``intensity`` in
    ``[0, 1]``, ``shape`` ``"ellipse"`` or ``"box"``; ``inside`` names the object it is clipped to (lesions)."""

    name: str
    centre: tuple[float, ...]
    radii: tuple[float, ...]
    intensity: float
    shape: str = "ellipse"
    inside: str | None = None


@dataclass
class Phantom:
    """A rendered phantom: ``image`` in ``[0, 1]`` and ``labels`` (``[S]*dims``), ``names`` value -> object name,
    ``captions`` value -> one sentence describing the object's size, brightness, shape and position."""

    image: np.ndarray
    labels: np.ndarray
    names: dict[int, str]
    captions: dict[int, str]


def render_phantom(objects: list[PhantomObject], size: int = 128, noise: float = 0.03, seed: int = 0) -> Phantom:
    """Paint ``objects`` in order (later ones on top) on a ``size``-sided grid of ``len(centre)`` dims."""
    dims = len(objects[0].centre)
    grid = np.stack(np.meshgrid(*[(np.arange(size) + 0.5) / size] * dims, indexing="ij"))  # [dims, S, ...]
    image = np.zeros((size,) * dims, np.float32)
    labels = np.zeros((size,) * dims, np.int64)
    names: dict[int, str] = {}
    captions: dict[int, str] = {}
    for value, obj in enumerate(objects, start=1):
        offset = (grid - np.reshape(obj.centre, (dims,) + (1,) * dims)) / np.reshape(obj.radii, (dims,) + (1,) * dims)
        mask = (offset**2).sum(0) <= 1 if obj.shape == "ellipse" else np.abs(offset).max(0) <= 1
        if obj.inside is not None:
            host = [v for v, n in names.items() if n == obj.inside]
            mask &= np.isin(labels, host)
        if not mask.any():
            continue
        labels[mask], image[mask] = value, obj.intensity
        names[value], captions[value] = obj.name, _caption(obj, obj.inside)
    rng = np.random.default_rng(seed)
    image = np.clip(image + rng.normal(0, noise, image.shape).astype(np.float32), 0, 1)
    return Phantom(image, labels, names, captions)


def random_phantom(seed: int, size: int = 128, dims: int = 2, max_lesions: int = 2) -> Phantom:
    """An abdomen-like phantom with randomly placed/sized organs and 0..``max_lesions`` lesions."""
    rng = np.random.default_rng(seed)

    def jitter(values: tuple[float, ...], scale: float) -> tuple[float, ...]:
        return tuple(float(v + rng.uniform(-scale, scale)) for v in values)

    def pad(values: tuple[float, float], extra: float) -> tuple[float, ...]:
        return values + (extra,) * (dims - 2)

    objects = [
        PhantomObject("body", pad((0.5, 0.5), 0.5), jitter(pad((0.38, 0.46), 0.4), 0.03), 0.35),
        PhantomObject("liver", jitter(pad((0.42, 0.3), 0.5), 0.04), jitter(pad((0.18, 0.15), 0.2), 0.03), 0.6),
        PhantomObject("right kidney", jitter(pad((0.62, 0.32), 0.5), 0.03), pad((0.07, 0.05), 0.08), 0.8),
        PhantomObject("left kidney", jitter(pad((0.62, 0.68), 0.5), 0.03), pad((0.07, 0.05), 0.08), 0.8),
    ]
    for _ in range(rng.integers(0, max_lesions + 1)):
        host = objects[rng.integers(1, 4)]
        radius = float(rng.uniform(0.02, 0.06))
        centre = tuple(float(c + rng.uniform(-r, r) * 0.5) for c, r in zip(host.centre, host.radii, strict=True))
        shape = "ellipse" if rng.random() < 0.7 else "box"
        objects.append(
            PhantomObject("tumour", centre, (radius,) * dims, float(rng.choice([0.15, 0.95])), shape, host.name)
        )
    return render_phantom(objects, size=size, seed=seed)


def phantom_slice(size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 2D phantom as (image, labels) with the fixed values of :data:`PHANTOM_LABELS` (one tumour in the liver).

    Patient right is on image left (radiological convention), so the liver and right kidney lie at small ``j``.
    """
    rng = np.random.default_rng(seed)
    shift = tuple(rng.uniform(-0.02, 0.02, 2))
    place = lambda c: (c[0] + shift[0], c[1] + shift[1])  # noqa: E731 - tiny local helper
    objects = [
        PhantomObject("body", place((0.5, 0.5)), (0.38, 0.46), 0.35),
        PhantomObject("liver", place((0.42, 0.3)), (0.18, 0.15), 0.6),
        PhantomObject("left kidney", place((0.62, 0.68)), (0.07, 0.05), 0.8),
        PhantomObject("right kidney", place((0.62, 0.32)), (0.07, 0.05), 0.8),
        PhantomObject("tumour", place((0.4, 0.3)), (0.05, 0.05), 0.3, inside="liver"),
    ]
    phantom = render_phantom(objects, size=size, seed=seed)
    return phantom.image, phantom.labels


def _caption(obj: PhantomObject, host: str | None) -> str:
    size = float(np.mean(obj.radii))
    size_word = "small" if size < 0.05 else "large" if size > 0.15 else "medium-sized"
    tone = "bright" if obj.intensity > 0.7 else "dark" if obj.intensity < 0.3 else "grey"
    form = "round" if obj.shape == "ellipse" else "square"
    vertical = "upper" if obj.centre[0] < 0.45 else "lower" if obj.centre[0] > 0.55 else "middle"
    horizontal = "left" if obj.centre[1] < 0.45 else "right" if obj.centre[1] > 0.55 else "centre"
    where = f"in the {host}" if host else f"in the {vertical} {horizontal} of the image"
    return f"a {size_word} {tone} {form} {obj.name} {where}"
