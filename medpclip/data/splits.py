"""Training/validation splits of 3D volumes by slab, so that validation slices are never next to training slices.

Neighbouring slices of a volume are nearly identical; a random slice split would put copies of the validation
slices into training. :func:`slab_split` instead cuts an extent ``[start, stop)`` into consecutive slabs, gives
whole slabs to validation and leaves a gap of unused slices on both sides of each validation slab.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DEFAULT_GAP", "DEFAULT_N_SLABS", "DEFAULT_VALIDATION_SLABS", "slab_bounds", "slab_split", "split_params"]

DEFAULT_N_SLABS = 10
DEFAULT_VALIDATION_SLABS: tuple[int, ...] = (3, 7)
DEFAULT_GAP = 3

Range = tuple[int, int]


def _check_int(name: str, value: object) -> int:
    """``value`` as an int, or a ValueError naming ``name`` (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} should be an integer, got {value!r}.")
    return value


def slab_bounds(start: int, stop: int, n_slabs: int) -> list[Range]:
    """Cut ``[start, stop)`` into ``n_slabs`` consecutive half-open ranges whose sizes differ by at most one.

    Raises:
        ValueError: if ``start < 0``, ``n_slabs < 1`` or the extent has fewer than ``n_slabs`` slices.
    """
    start, stop, n_slabs = _check_int("start", start), _check_int("stop", stop), _check_int("n_slabs", n_slabs)
    if start < 0:
        raise ValueError(f"start should be >= 0, got {start}.")
    if n_slabs < 1:
        raise ValueError(f"n_slabs should be >= 1, got {n_slabs}.")
    if stop - start < n_slabs:
        raise ValueError(f"[{start}, {stop}) has {max(stop - start, 0)} slices, fewer than n_slabs={n_slabs}.")
    length = stop - start
    edges = [start + (i * length) // n_slabs for i in range(n_slabs + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n_slabs)]


def slab_split(
    start: int,
    stop: int,
    n_slabs: int = DEFAULT_N_SLABS,
    validation_slabs: Sequence[int] = DEFAULT_VALIDATION_SLABS,
    gap: int = DEFAULT_GAP,
) -> tuple[list[Range], list[Range]]:
    """Split the slice extent ``[start, stop)`` into training and validation ranges by slab.

    The extent is cut into ``n_slabs`` consecutive slabs (:func:`slab_bounds`); the slabs numbered in
    ``validation_slabs`` (0-based) go to validation whole, every other slab goes to training after removing the
    slices that lie within ``gap`` of a validation slab. So for every training slice ``t`` and validation slice
    ``v``: ``|t - v| > gap``. Training slabs left empty by the gap are dropped.

    Args:
        start: first slice of the extent (>= 0).
        stop: one past the last slice.
        n_slabs: number of slabs (>= 2, and at most ``stop - start``).
        validation_slabs: distinct slab numbers in ``[0, n_slabs)`` for validation; not all of them.
        gap: slices left unused on each side of every validation slab (>= 0).

    Returns:
        ``(training, validation)``: lists of half-open ``(start, stop)`` ranges, one per slab, in increasing
        order. Validation ranges are whole slabs; their union with the training ranges and the gaps is
        ``[start, stop)``.

    Raises:
        ValueError: for a bad argument (the message says which), or when the gaps leave no training slice.
    """
    n_slabs, gap = _check_int("n_slabs", n_slabs), _check_int("gap", gap)
    if n_slabs < 2:
        raise ValueError(f"n_slabs should be >= 2 (one slab cannot be split), got {n_slabs}.")
    if gap < 0:
        raise ValueError(f"gap should be >= 0, got {gap}.")
    chosen = [_check_int("validation slab", s) for s in validation_slabs]
    if not chosen:
        raise ValueError("validation_slabs should name at least one slab.")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"validation_slabs should be distinct, got {tuple(chosen)}.")
    if any(not 0 <= s < n_slabs for s in chosen):
        raise ValueError(f"validation_slabs should lie in [0, {n_slabs}), got {tuple(chosen)}.")
    if len(chosen) == n_slabs:
        raise ValueError(f"validation_slabs {tuple(chosen)} take every slab: nothing is left for training.")
    slabs = slab_bounds(start, stop, n_slabs)
    validation = [slabs[s] for s in sorted(chosen)]
    training = []
    for number, (lo, hi) in enumerate(slabs):
        if number in chosen:
            continue
        for v_lo, v_hi in validation:
            if v_hi <= lo:  # validation slab before this one
                lo = max(lo, v_hi + gap)
            elif v_lo >= hi:  # validation slab after this one
                hi = min(hi, v_lo - gap)
        if lo < hi:
            training.append((lo, hi))
    if not training:
        raise ValueError(f"gap={gap} removes every training slice of [{start}, {stop}) with {n_slabs} slabs.")
    return training, validation


def split_params(
    n_slabs: int = DEFAULT_N_SLABS, validation_slabs: Sequence[int] = DEFAULT_VALIDATION_SLABS, gap: int = DEFAULT_GAP
) -> dict[str, object]:
    """The split parameters as written into datalists and manifests (JSON-ready)."""
    return {"method": "slab", "n_slabs": n_slabs, "validation_slabs": list(validation_slabs), "gap": gap}
