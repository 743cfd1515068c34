"""Reading a MONAI Label infer request: clicks in the two styles clients send, a box, label lists.

Every problem becomes ``fastapi.HTTPException`` 422 with a one-line reason, which MONAI Label passes to the
client as JSON (``{"detail": ...}``) and which leaves the server serving.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from fastapi import HTTPException

__all__ = ["Clicks", "clicks", "invalid", "label_list", "number_list", "optional", "reported_as_422"]


def invalid(reason: str) -> HTTPException:
    return HTTPException(status_code=422, detail=reason)


@contextmanager
def reported_as_422() -> Iterator[None]:
    """Turn the ``ValueError``/``FileNotFoundError`` of :mod:`medpclip.inference` (bad image, click outside the
    image, empty mask ...) into a 422 with the same one-line message."""
    try:
        yield
    except (ValueError, FileNotFoundError) as err:
        raise invalid(str(err)) from err


class Clicks:
    """Positive and negative clicks (voxel indices) of one slice, and how many clicks on other slices were left."""

    def __init__(self, positives: list[list[float]], negatives: list[list[float]], dropped: int = 0) -> None:
        self.positives, self.negatives, self.dropped = positives, negatives, dropped

    def __bool__(self) -> bool:
        return bool(self.positives or self.negatives)


def clicks(request: dict, ndim: int, axis: int) -> Clicks:
    """Clicks from VISTA3D-style ``points`` + ``point_labels`` (1 foreground, 0 background, as OHIF sends them) or
    Deepgrow-style ``foreground`` / ``background`` (3D Slicer). In a volume only the clicks on the slice of the
    last click are used: a viewer keeps every click the user made, on any slice, and MedP-CLIP segments from one
    slice and propagates."""
    if request.get("points"):
        points = _points(request["points"], "points", ndim)
        labels = request.get("point_labels")
        labels = [1] * len(points) if labels is None else number_list(labels, "point_labels")
        if len(labels) != len(points):
            raise invalid(f"point_labels has {len(labels)} entries for {len(points)} points.")
        tagged = [(p, label > 0) for p, label in zip(points, labels, strict=True) if label >= 0]
    else:
        tagged = [(p, True) for p in _points(request.get("foreground") or [], "foreground", ndim)]
        tagged += [(p, False) for p in _points(request.get("background") or [], "background", ndim)]
    kept = tagged
    if ndim == 3 and tagged:
        last = round(tagged[-1][0][axis])
        kept = [(p, positive) for p, positive in tagged if round(p[axis]) == last]
    return Clicks([p for p, pos in kept if pos], [p for p, pos in kept if not pos], len(tagged) - len(kept))


def number_list(value: object, name: str, length: int | None = None) -> list[float]:
    """A list of finite numbers (``length`` of them when given)."""
    if not isinstance(value, list | tuple) or not all(_is_number(v) for v in value):
        raise invalid(f"{name} should be a list of numbers, got {_short(value)}.")
    if length is not None and len(value) != length:
        raise invalid(f"{name} should have {length} numbers, got {len(value)}.")
    return [float(v) for v in value]


def label_list(value: object, default: Sequence[str]) -> list[str]:
    """Free-text labels from a list or a comma-separated string; ``default`` when absent. An explicitly empty
    list is an error, not a silent fallback."""
    if value is None:
        return list(default)
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise invalid(f"labels should be a list of strings or a comma-separated string, got {_short(value)}.")
    labels = list(dict.fromkeys(v.strip() for v in value if v.strip()))
    if not labels:
        raise invalid("labels are empty: give at least one label.")
    return labels


def optional(request: dict, name: str, parse: Callable[[object], object]) -> object:
    """``parse(request[name])`` or None when the field is absent or null."""
    value = request.get(name)
    return None if value is None else parse(value)


def _points(value: object, name: str, ndim: int) -> list[list[float]]:
    if not isinstance(value, list | tuple):
        raise invalid(f"{name} should be a list of [i, j(, k)] voxel indices, got {_short(value)}.")
    return [number_list(p, f"each of {name}", ndim) for p in value]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
