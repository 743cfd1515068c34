"""Validator: modality figures on the held-out files and on augmented copies of them."""

import json

import numpy as np
import torch
from PIL import Image

from medpclip.engines.validation import Validator
from medpclip.networks import build_model


def test_modality_views_are_augmented_copies_scored_beside_the_files(tmp_path):
    items = []
    for n, modality in enumerate(["CT", "MR", "US"]):
        path = tmp_path / f"{n}.png"
        Image.fromarray((np.random.default_rng(n).random((48, 40)) * 255).astype(np.uint8)).save(path)
        items.append({"image": str(path), "modality": modality, "text": f"a {modality} image"})
    datalist = tmp_path / "modalities.json"
    datalist.write_text(json.dumps({"training": [], "validation": items}))

    plain = Validator.from_datalists([], str(datalist), image_size=128)
    assert plain.modality_views is None
    assert "modality/augmented_accuracy" not in plain(build_model("tiny"))
    validator = Validator.from_datalists([], str(datalist), image_size=128, modality_views=4)
    files, views = validator.modality_images, validator.modality_views
    assert views.shape == (4 * len(files), 1, 128, 128)
    copies = views.view(4, len(files), -1)
    assert (copies - files.flatten(1)).abs().amax(-1).gt(0.05).float().mean() > 0.5, "most copies are changed"
    torch.manual_seed(0)
    metrics = validator(build_model("tiny"))
    assert metrics["modality/images"] == 3 and metrics["modality/augmented_images"] == 12
    assert 0 <= metrics["modality/augmented_accuracy"] <= 1
    again = Validator.from_datalists([], str(datalist), image_size=128, modality_views=4)
    assert torch.equal(again.modality_views, views), "the same seed draws the same copies"


def test_modality_draws_score_other_slices_of_volumes_and_the_same_single_images(tmp_path):
    import nibabel as nib

    volume = np.random.default_rng(0).random((40, 32, 32)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "t1.nii.gz")
    Image.fromarray((np.random.default_rng(1).random((48, 40)) * 255).astype(np.uint8)).save(tmp_path / "us.png")
    items = [
        {
            "image": str(tmp_path / "t1.nii.gz"),
            "modality": "MR T1",
            "text": "an MR image",
            "axis": 0,
            "slices": [0, 40],
        },
        {"image": str(tmp_path / "us.png"), "modality": "US", "text": "an ultrasound image"},
    ]
    datalist = tmp_path / "modalities.json"
    datalist.write_text(json.dumps({"training": [], "validation": items}))

    validator = Validator.from_datalists([], str(datalist), image_size=128, modality_draws=3)
    draws = validator.modality_draws.view(3, 2, -1)
    assert torch.equal(draws[0], validator.modality_images.flatten(1)), "the first draw is the seed's own images"
    assert not torch.equal(draws[1, 0], draws[0, 0]) or not torch.equal(draws[2, 0], draws[0, 0]), "other slices"
    assert torch.equal(draws[1, 1], draws[0, 1]) and torch.equal(draws[2, 1], draws[0, 1]), "one image, one draw"
    metrics = validator(build_model("tiny"))
    assert metrics["modality/draws_images"] == 6 and 0 <= metrics["modality/draws_accuracy"] <= 1
    counts = [m.split("(")[1].rstrip(")").split(" of ") for m in metrics["modality/draws_misses"]]
    assert sum(int(k) for k, _ in counts) == round((1 - metrics["modality/draws_accuracy"]) * 6), "each miss once"
    assert all(int(k) <= int(n) == 3 for k, n in counts), "out of the file's 3 draws"
    assert Validator.from_datalists([], str(datalist), image_size=64).modality_draws is None
