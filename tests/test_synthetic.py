"""Simulated radiographs and ultrasound images for modality training (medpclip.data.synthetic)."""

import nibabel as nib
import numpy as np
import pytest
import torch

from medpclip.data.synthetic import SyntheticModalities, simulated_radiograph, simulated_ultrasound


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


def test_ultrasound_is_a_speckled_fan_on_black():
    tissue = np.random.default_rng(0).random((40, 60))
    image = simulated_ultrasound(tissue, np.random.default_rng(1), size=64)
    assert image.shape == (1, 64, 64) and image.min() >= 0 and image.max() <= 1
    assert float(image[0, 0, 0]) == 0 and float(image[0, 0, -1]) == 0, "outside the fan is black"
    assert float(image[0, 20:40, 24:40].std()) > 0.05, "speckle inside the fan"


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
