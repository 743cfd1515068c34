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
