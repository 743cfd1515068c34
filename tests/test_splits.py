"""Slab split: validation slabs whole, training slabs trimmed by the gap, never adjacent to validation."""

from __future__ import annotations

import pytest

from medpclip.data.splits import slab_bounds, slab_split, split_params


def _indices(ranges: list[tuple[int, int]]) -> set[int]:
    return {i for lo, hi in ranges for i in range(lo, hi)}


@pytest.mark.parametrize("start, stop", [(0, 128), (17, 180), (5, 25), (0, 197)])
def test_slab_bounds_partition_extent(start, stop):
    bounds = slab_bounds(start, stop, 10)
    assert len(bounds) == 10
    assert bounds[0][0] == start and bounds[-1][1] == stop
    assert all(bounds[i][1] == bounds[i + 1][0] for i in range(len(bounds) - 1))
    sizes = [hi - lo for lo, hi in bounds]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    "start, stop, n_slabs, validation_slabs, gap",
    [
        (0, 128, 10, (3, 7), 3),
        (17, 180, 10, (3, 7), 3),
        (0, 100, 5, (0,), 2),
        (0, 60, 6, (5,), 4),
        (0, 40, 4, (1, 2), 0),
    ],
)
def test_ranges_cover_extent_minus_gaps(start, stop, n_slabs, validation_slabs, gap):
    training, validation = slab_split(start, stop, n_slabs, validation_slabs, gap)
    train, val = _indices(training), _indices(validation)
    assert not train & val
    assert train | val <= set(range(start, stop))
    # every slice left out is within `gap` of a validation slice, and every one within it is left out
    near_validation = {i for i in range(start, stop) if i not in val and min(abs(i - v) for v in val) <= gap}
    assert set(range(start, stop)) - train - val == near_validation
    assert sum(hi - lo for lo, hi in training) == len(train)  # ranges do not overlap


@pytest.mark.parametrize("gap", [0, 1, 3, 5])
def test_no_training_slice_within_gap_of_validation(gap):
    training, validation = slab_split(0, 150, 10, (3, 7), gap)
    train, val = _indices(training), _indices(validation)
    assert min(abs(t - v) for t in train for v in val) == gap + 1


def test_validation_slabs_are_the_chosen_whole_slabs():
    bounds = slab_bounds(20, 170, 10)
    training, validation = slab_split(20, 170, 10, (7, 3), 3)
    assert validation == [bounds[3], bounds[7]]
    assert len(training) == 8  # every other slab keeps some slices
    assert all(b in training for i, b in enumerate(bounds) if i not in (2, 3, 4, 6, 7, 8))  # untouched slabs


def test_deterministic():
    assert slab_split(3, 211, 10, (3, 7), 3) == slab_split(3, 211, 10, (3, 7), 3)


def test_training_slab_emptied_by_gap_is_dropped():
    training, validation = slab_split(0, 20, 10, (3, 5), 2)  # slab 4 = [8, 10) lies within 2 of both
    assert (8, 10) not in training and not _indices(training) & set(range(4, 14))
    assert validation == [(6, 8), (10, 12)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"start": -1, "stop": 10}, "start"),
        ({"start": 0, "stop": 5}, "fewer than n_slabs"),
        ({"start": 10, "stop": 10}, "fewer than n_slabs"),
        ({"start": 0, "stop": 100, "n_slabs": 1}, "n_slabs"),
        ({"start": 0, "stop": 100, "gap": -1}, "gap"),
        ({"start": 0, "stop": 100, "validation_slabs": ()}, "at least one"),
        ({"start": 0, "stop": 100, "validation_slabs": (3, 3)}, "distinct"),
        ({"start": 0, "stop": 100, "validation_slabs": (10,)}, r"\[0, 10\)"),
        ({"start": 0, "stop": 100, "n_slabs": 2, "validation_slabs": (0, 1)}, "every slab"),
        ({"start": 0, "stop": 12, "n_slabs": 3, "validation_slabs": (1,), "gap": 4}, "removes every training"),
        ({"start": 0.0, "stop": 100}, "integer"),
        ({"start": 0, "stop": 100, "gap": True}, "integer"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        slab_split(**kwargs)


def test_split_params_record_arguments():
    assert split_params(8, (1, 5), 2) == {"method": "slab", "n_slabs": 8, "validation_slabs": [1, 5], "gap": 2}
