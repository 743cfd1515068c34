"""Volumes reach the model in RAS voxel order whatever order their file has; prompts and masks stay in the file's."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import torch

from medpclip.inference import SlicePredictor, classify_volume, load_image, segment_volume
from medpclip.inference.orientation import Reorientation

ORIENTATIONS = [
    (perm, flips) for perm in itertools.permutations(range(3)) for flips in itertools.product((1, -1), repeat=3)
]


def affine_of(perm: tuple[int, ...], flips: tuple[int, ...], spacing: float = 1.5) -> np.ndarray:
    """Voxel axis ``d`` runs along world axis ``perm[d]`` (RAS), in direction ``flips[d]``."""
    affine = np.eye(4)
    affine[:3, :3] = 0
    for d, (world, flip) in enumerate(zip(perm, flips, strict=True)):
        affine[world, d] = flip * spacing
    return affine


@pytest.mark.parametrize("perm, flips", ORIENTATIONS)
def test_reorientation_maps_arrays_indices_and_boxes_consistently(perm, flips):
    shape = (5, 6, 7)
    orient = Reorientation(shape, affine_of(perm, flips))
    data = np.random.default_rng(0).random(shape)
    ras = orient.array(data)
    assert np.array_equal(orient.back(ras), data)
    assert orient.is_identity == (perm == (0, 1, 2) and flips == (1, 1, 1))
    for point in itertools.product((0, 2, 4), (0, 5), (1, 6)):
        mapped = [int(v) for v in orient.index(point)]
        assert ras[tuple(mapped)] == data[point]
    for axis in range(3):
        assert ras.shape[orient.axis(axis)] == shape[axis]
        low, high = [1, 1, 1], [3, 4, 5]
        low[axis] = high[axis] = 2
        box = [v for d, v in enumerate(low) if d != axis] + [v for d, v in enumerate(high) if d != axis]
        corners = [orient.index(low), orient.index(high)]
        expected = [min(c[d] for c in corners) for d in range(3) if d != orient.axis(axis)]
        expected += [max(c[d] for c in corners) for d in range(3) if d != orient.axis(axis)]
        assert orient.box(box, axis) == expected


def test_2d_images_and_images_without_affine_are_left_alone():
    assert Reorientation((5, 6), np.eye(3)).is_identity
    assert Reorientation((5, 6, 7), None).is_identity


def test_an_lps_series_is_segmented_as_its_ras_twin(tmp_path, tiny_model):
    """The same anatomy stored RAS and LPS (as DICOM stores CT): the mask of the LPS file, read in world space,
    is the RAS file's; the slice and every count agree."""
    rng = np.random.default_rng(1)
    ras = rng.normal(0, 200, (24, 20, 8)).astype(np.float32)
    ras[6:16, 5:14, 2:7] += 600  # a bright block to click
    lps = ras[::-1, ::-1].copy()
    nib.save(nib.Nifti1Image(ras, affine_of((0, 1, 2), (1, 1, 1))), tmp_path / "ras.nii.gz")
    lps_affine = affine_of((0, 1, 2), (-1, -1, 1))
    lps_affine[:3, 3] = [23 * 1.5, 19 * 1.5, 0]  # same world box
    nib.save(nib.Nifti1Image(lps, lps_affine), tmp_path / "lps.nii.gz")
    torch.manual_seed(0)
    predictor = SlicePredictor(tiny_model)
    click = [10, 9, 4]
    lps_click = [23 - 10, 19 - 9, 4]
    a = segment_volume(predictor, load_image(tmp_path / "ras.nii.gz", "CT"), tmp_path / "a.nii.gz", points=[click])
    b = segment_volume(predictor, load_image(tmp_path / "lps.nii.gz", "CT"), tmp_path / "b.nii.gz", points=[lps_click])
    mask_a = np.asarray(nib.load(tmp_path / "a.nii.gz").dataobj)
    mask_b = np.asarray(nib.load(tmp_path / "b.nii.gz").dataobj)
    assert a["voxels"] > 0 and a["slice"] == b["slice"] == 4
    assert (a["voxels"], a["slices"]) == (b["voxels"], b["slices"])
    assert np.array_equal(mask_a, mask_b[::-1, ::-1])  # file voxel order kept: LPS mask for the LPS file
    ranked_a = classify_volume(predictor, load_image(tmp_path / "ras.nii.gz", "CT"), ["liver", "lung"], points=[click])
    lps_volume = load_image(tmp_path / "lps.nii.gz", "CT")
    ranked_b = classify_volume(predictor, lps_volume, ["liver", "lung"], points=[lps_click])
    assert ranked_a == ranked_b


def test_errors_quote_the_file_coordinates(tiny_model, tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((10, 12, 6), np.float32), affine_of((0, 1, 2), (-1, -1, 1))), tmp_path / "v.nii")
    volume = load_image(tmp_path / "v.nii")
    with pytest.raises(ValueError, match=r"point \(11, 3, 2\) lies outside"):
        segment_volume(SlicePredictor(tiny_model), volume, tmp_path / "m.nii.gz", points=[[11, 3, 2]])
    with pytest.raises(ValueError, match="reversed"):
        segment_volume(SlicePredictor(tiny_model), volume, tmp_path / "m.nii.gz", points=[[1, 3, 2]], box=[5, 5, 2, 8])
    assert not (tmp_path / "m.nii.gz").exists()
