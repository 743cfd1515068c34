"""Simulated radiographs and ultrasound images for modality training (medpclip.data.synthetic)."""

import nibabel as nib
import numpy as np
import pytest
import torch

from medpclip.data.synthetic import (
    SyntheticModalities,
    _burn_in,
    _probe_window,
    _scan,
    simulated_radiograph,
    simulated_ultrasound,
)


def _ball_phantom(size: int = 48) -> np.ndarray:
    """Air with a water ball and a bone ball at its centre, in Hounsfield units: ``[size, size, size]``."""
    r = np.linalg.norm(np.mgrid[0:size, 0:size, 0:size] - (size - 1) / 2, axis=0)
    return np.where(r < size / 10, 1000.0, np.where(r < size / 3, 0.0, -1000.0))


@pytest.mark.parametrize("seed", range(8))
def test_radiograph_shows_the_attenuation_of_the_projected_anatomy(seed):
    image = simulated_radiograph(_ball_phantom(), np.random.default_rng(seed), size=32)
    assert image.shape == (1, 32, 32) and image.min() >= 0 and image.max() <= 1
    centre, corner = float(image[0, 16, 16]), float(image[0, 0, 0])
    # the ray through bone and water is bright, the ray through air only dark (as readers show MONOCHROME1 files)
    assert centre - corner > 0.9


@pytest.mark.parametrize("seed", range(6))
def test_an_ultrasound_scan_is_speckle_inside_the_probes_field_of_view(seed):
    scan = _scan(np.full((64, 64), 0.5), np.random.default_rng(seed))
    assert scan.shape == (64, 64) and scan.min() >= 0 and scan.max() <= 1
    assert scan[0, 0] == 0 and scan[0, -1] == 0, "the top corners lie outside every probe's field of view"
    assert float(scan[24:40, 24:40].std()) > 0.05, "speckle inside the field of view"


def test_ultrasound_frames_are_black_screens_with_burned_in_marks_and_beams_along_either_axis():
    tissue = np.full((40, 60), 0.5)
    along_rows = []
    for seed in range(16):
        image = simulated_ultrasound(tissue, np.random.default_rng(seed), size=64)[0].numpy()
        assert image.shape == (64, 64) and image.min() >= 0 and image.max() <= 1
        assert (image < 0.02).mean() > 0.1, "black outside the scan"
        # speckle is smoothed along the beam: neighbours along it correlate more than across it
        lag_rows = np.corrcoef(image[1:, :].ravel(), image[:-1, :].ravel())[0, 1]
        lag_cols = np.corrcoef(image[:, 1:].ravel(), image[:, :-1].ravel())[0, 1]
        along_rows.append(lag_rows > lag_cols)
    assert 3 <= sum(along_rows) <= 13, "frames come in the orientations of their grid, not all with beams down rows"
    screen = np.zeros((64, 64))
    _burn_in(screen, np.random.default_rng(0))
    assert 0 < (screen > 0.5).mean() < 0.2, "text, a ruler and a bar mark a small part of the screen"


@pytest.mark.parametrize("seed", range(8))
def test_the_probe_sees_anatomy_not_the_air_around_the_body(seed):
    r = np.linalg.norm(np.mgrid[0:80, 0:60] - np.array([40, 30])[:, None, None], axis=0)
    body = np.where(r < 25, 0.5, 0.0)  # a disc of tissue in air
    window = _probe_window(body, np.random.default_rng(seed))
    assert window.shape[0] == window.shape[1] and 18 <= window.shape[0] <= 36  # 30-60 % of the shorter side
    assert (window > 0.05).mean() > 0.5, "mostly tissue"
    assert _probe_window(np.zeros((20, 30)), np.random.default_rng(seed)).shape == (20, 30)  # no tissue: all of it


def test_synthetic_modalities_draw_from_the_training_volumes(tmp_path):
    nib.save(nib.Nifti1Image(_ball_phantom(24).astype(np.float32), np.eye(4)), tmp_path / "ct.nii.gz")
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32), np.eye(4)),
        tmp_path / "mr.nii.gz",
    )
    items = [
        {"image": str(tmp_path / "ct.nii.gz"), "modality": "CT", "slices": [0, 8]},
        {"image": str(tmp_path / "ct.nii.gz"), "modality": "CT", "slices": [12, 20]},  # a second slab: read once
        {"image": str(tmp_path / "mr.nii.gz"), "modality": "MR T1"},
    ]
    synthetic = SyntheticModalities(items, seed=0)
    assert len(synthetic.ct_volumes) == 1 and len(synthetic.tissue) == 2
    for family in SyntheticModalities.FAMILIES:
        image = synthetic(family, 32)
        assert image.shape == (1, 32, 32) and torch.isfinite(image).all() and image.std() > 0


def test_synthetic_modalities_need_a_volume(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="3D training volumes"):
        SyntheticModalities([{"image": str(tmp_path / "a.png"), "modality": "CR"}])
