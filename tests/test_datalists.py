"""Datalists: the three forms load, paths resolve, and bad datalists fail with one error listing every problem."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medpclip.data.datalists import DatalistError, datalist_form, load_datalist
from medpclip.data.dataset import PROMPT_FORMS, PROPAGATED, ImageSliceDataset, RegionSliceDataset, collate_regions
from medpclip.data.phantoms import random_phantom
from medpclip.inference import load_image
from medpclip.knowledge import default_knowledge_base


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A 3D phantom (image + labels), a 2D mask and a PNG under one folder."""
    root = tmp_path_factory.mktemp("datalists")
    phantom = random_phantom(seed=1, size=40, dims=3)
    nib.save(nib.Nifti1Image(phantom.image, np.eye(4)), root / "ct.nii.gz")
    nib.save(nib.Nifti1Image(phantom.labels.astype(np.int16), np.eye(4)), root / "labels.nii.gz")
    nib.save(nib.Nifti1Image(phantom.image[:, :, 20], np.eye(4)), root / "slice.nii.gz")
    nib.save(nib.Nifti1Image((phantom.labels[:, :, 20] == 2).astype(np.uint8), np.eye(4)), root / "liver_mask.nii.gz")
    (root / "names.json").write_text(json.dumps({str(k): v for k, v in phantom.names.items()}))
    return root


def write(root, name: str, data: dict):
    path = root / name
    path.write_text(json.dumps(data))
    return path


def label_datalist(root, **extra):
    names = json.loads((root / "names.json").read_text())
    item = {"image": "ct.nii.gz", "label": "labels.nii.gz", "axis": 2, "slices": [5, 35], **extra}
    return {"labels": names, "modality": "CT", "training": [item], "validation": [item]}


def test_the_three_forms_load_and_resolve_paths(root):
    items = load_datalist(write(root, "a.json", label_datalist(root)))
    assert datalist_form(items) == "labels"
    assert items[0]["image"] == str(root / "ct.nii.gz") and items[0]["modality"] == "CT"
    regions = {
        "training": [
            {
                "image": "slice.nii.gz",
                "regions": [
                    {"name": "liver", "mask": "liver_mask.nii.gz"},
                    {"name": "left kidney", "box": [3, 4, 20, 30]},
                    {"text": "a dark spot", "points": [[10, 10]]},
                ],
            }
        ]
    }
    items = load_datalist(write(root, "b.json", regions))
    assert datalist_form(items) == "regions"
    assert items[0]["regions"][0]["mask"] == str(root / "liver_mask.nii.gz")
    pairs = {"training": [{"image": "slice.nii.gz", "text": "an abdominal CT slice"}]}
    assert datalist_form(load_datalist(write(root, "c.json", pairs))) == "pairs"


def test_bad_datalist_lists_every_bad_entry(root):
    good = label_datalist(root)["training"][0]
    names = json.loads((root / "names.json").read_text())
    data = {
        "labels": {**names, "9": "Flux_Capacitor_L"},
        "training": [
            good,
            {**good, "image": "missing.nii.gz"},
            {**good, "label": "slice.nii.gz"},
            {**good, "slices": [10, 400]},
            {"image": "slice.nii.gz", "label": "liver_mask.nii.gz", "axis": 0},
        ],
    }
    with pytest.raises(DatalistError) as err:
        load_datalist(write(root, "bad.json", data))
    message = str(err.value)
    assert message.count("training[") == 5, message  # every entry has at least one problem (unknown label)
    for fragment in ("missing file", "label shape", "do not fit", "need a 3D image", "Flux_Capacitor_L"):
        assert fragment in message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"training": [{"image": "slice.nii.gz", "regions": [{"name": "liver"}]}]}, "no 'mask', 'box' or 'points'"),
        ({"training": [{"image": "slice.nii.gz", "regions": [{"name": "liver", "box": [9, 9, 1, 1]}]}]}, "box"),
        ({"training": [{"image": "slice.nii.gz", "text": " "}]}, "non-empty string"),
        ({"training": [{"image": "slice.nii.gz", "foo": 1}]}, "cannot tell the form"),
        ({"validation": []}, "no list 'training'"),
    ],
)
def test_malformed_entries(root, data, message):
    with pytest.raises(DatalistError, match=message):
        load_datalist(write(root, "m.json", data))


def test_missing_or_broken_datalist_file(root):
    with pytest.raises(DatalistError, match="does not exist"):
        load_datalist(root / "nope.json")
    (root / "broken.json").write_text("{")
    with pytest.raises(DatalistError, match="not valid JSON"):
        load_datalist(root / "broken.json")


def test_region_dataset_feeds_the_model(root, tiny_model):
    items = load_datalist(write(root, "a.json", label_datalist(root)))
    dataset = RegionSliceDataset(items, image_size=128, num_regions=3, samples_per_item=4)
    dataset.set_random_state(0)
    batch = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_regions)))
    assert batch.images.shape == (4, 1, 128, 128) and batch.masks.shape == (4, 3, 128, 128)
    assert 0 <= batch.images.min() and batch.images.max() <= 1
    assert len(batch.texts) == 4 and all(len(t) == 3 for t in batch.texts)
    for form in PROMPT_FORMS:
        with torch.inference_mode():
            enc, masks = tiny_model(batch.images, batch.prompts(form))
        assert enc.region_embeds.shape == (4, 3, 256) and masks.shape == (4, 3, 32, 32)
    again = RegionSliceDataset(items, image_size=128, num_regions=3).set_random_state(0)[0]
    first = RegionSliceDataset(items, image_size=128, num_regions=3).set_random_state(0)[0]
    assert again["region_texts"] == first["region_texts"] and again["slice_index"] == first["slice_index"]


def test_registered_samples_carry_the_nearest_training_slice_lookup(root):
    items = load_datalist(write(root, "a.json", label_datalist(root)))
    labels = np.asarray(nib.load(root / "labels.nii.gz").dataobj).astype(int)
    names = json.loads((root / "names.json").read_text())
    kb = default_knowledge_base()
    reference = {(items[0]["label"], 2): [8, 30]}
    dataset = RegionSliceDataset(items, image_size=40, num_regions=3, samples_per_item=6, reference_slices=reference)
    dataset.set_random_state(0)
    for sample in (dataset[i] for i in range(6)):
        index = sample["slice_index"]
        atlas = labels[:, :, 8 if abs(index - 8) <= abs(index - 30) else 30]
        for mask, ranking in zip(sample["region_masks"] > 0.5, sample["region_nearest_training"], strict=True):
            under = atlas[mask.numpy()]
            found, counts = np.unique(under[under > 0], return_counts=True)
            expected = [kb.lookup(names[str(v)]).id for v in found[np.argsort(-counts, kind="stable")]]
            assert ranking == list(dict.fromkeys(expected)), f"slice {index}"
    moved = RegionSliceDataset(items, num_regions=3, displace=1.0, reference_slices=reference).set_random_state(0)[0]
    assert "region_nearest_training" not in moved, "a displaced slice has no registered lookup"


def test_displaced_region_priors_move_with_their_slice(root):
    items = load_datalist(write(root, "a.json", label_datalist(root)))
    dataset = RegionSliceDataset(items, num_regions=3, samples_per_item=4, displace=1.0, prior_offset=2)
    batch = next(iter(DataLoader(dataset.set_random_state(0), batch_size=4, collate_fn=collate_regions)))
    assert batch.prior_masks.shape == batch.masks.shape and batch.prior_boxes.shape == (4, 3, 4)
    overlap = (batch.prior_masks * batch.masks).flatten(2).sum(-1) / batch.masks.flatten(2).sum(-1)
    assert overlap.mean() > 0.5, "the prior is the same structure, moved by the same displacement"
    prompts = batch.prompts(PROPAGATED)
    i, j = prompts.points[..., 0, :].long().unbind(-1)
    inside = batch.prior_masks[torch.arange(4)[:, None], torch.arange(3)[None], i, j]
    assert prompts.masks is None and inside.bool().all(), "a click inside the prior, its box; the mask stays out"
    plain = collate_regions([RegionSliceDataset(items, num_regions=3).set_random_state(0)[0]])
    with pytest.raises(ValueError, match="prior_offset"):
        plain.prompts(PROPAGATED)


def test_displaced_samples_carry_the_position_only_guess_unless_training_turns_it_off(root):
    items = load_datalist(write(root, "a.json", label_datalist(root)))
    evaluated = RegionSliceDataset(items, num_regions=3, displace=1.0).set_random_state(0)[0]
    trained = RegionSliceDataset(items, num_regions=3, displace=1.0, position_guess=False).set_random_state(0)[0]
    assert len(evaluated["region_position_guess"]) == 3 and "region_position_guess" not in trained
    assert torch.equal(evaluated["region_masks"], trained["region_masks"]), "the same draws either way"


def test_elastic_deformation_moves_image_and_labels_together(root):
    items = load_datalist(write(root, "a.json", label_datalist(root)))

    def regions(elastic: float) -> tuple[dict, dict, dict]:
        sample = RegionSliceDataset(items, num_regions=6, elastic=elastic).set_random_state(0)[0]
        masks = {int(v): m > 0.5 for v, m in zip(sample["region_values"], sample["region_masks"], strict=True) if v}
        return sample, {v: float(sample["image"][0][m].mean()) for v, m in masks.items()}, masks

    plain, plain_means, plain_masks = regions(0.0)
    bent, bent_means, bent_masks = regions(1.0)
    assert (plain["slice_axis"], plain["slice_index"]) == (bent["slice_axis"], bent["slice_index"]), "same slice"
    common = set(plain_means) & set(bent_means)
    assert common and any(not torch.equal(plain_masks[v], bent_masks[v]) for v in common), "the labels moved"
    for value in common:  # each structure keeps its own intensity: the image moved with its label
        assert abs(plain_means[value] - bent_means[value]) < 0.05, value


def test_appearance_augmentation_changes_the_image_only_and_repeats_with_its_seed(root):
    items = load_datalist(write(root, "a.json", label_datalist(root)))
    unstyled = RegionSliceDataset(items, num_regions=3).set_random_state(0)
    plain = [unstyled[i] for i in range(4)]
    styled = RegionSliceDataset(items, num_regions=3, appearance=1.0).set_random_state(0)
    again = RegionSliceDataset(items, num_regions=3, appearance=1.0).set_random_state(0)
    for index, original in enumerate(plain):
        sample = styled[index]
        assert torch.equal(sample["region_masks"], original["region_masks"]), "the same draws and labels"
        assert sample["slice_index"] == original["slice_index"]
        assert 0 <= sample["image"].min() and sample["image"].max() <= 1
        assert (sample["image"] - original["image"]).abs().mean() > 0.01, "every part drawn: another look"
        assert torch.equal(again[index]["image"], sample["image"]), "reproducible from the seed"


def test_training_sees_a_colour_image_as_inference_does(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # a red cast: the red channel alone would be flat
    Image.fromarray(rgb).save(tmp_path / "doppler.png")
    trained = ImageSliceDataset([{"image": str(tmp_path / "doppler.png"), "modality": "US"}])[0]["image"]
    served = load_image(tmp_path / "doppler.png", "US")
    assert trained.shape == (1, 128, 128) and trained.std() > 0.1, "the luminance, not the flat red channel"
    assert torch.allclose(trained, served.as_tensor().float(), atol=1e-5)


def test_image_dataset_lists_the_files_that_load_and_names_the_others(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    items = [{"image": str(tmp_path / n), "modality": "CR"} for n in ("broken.png", "good.png")]
    assert ImageSliceDataset(items).readable_indices("modality images") == [1]
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"modality images: skipping {tmp_path / 'broken.png'}: ")


def test_tilted_samples_cut_the_drawn_slice_at_an_angle_inside_the_items_run(root):
    items = load_datalist(write(root, "a.json", label_datalist(root)))
    plain = RegionSliceDataset(items, num_regions=3).set_random_state(0)[0]
    tilted_set = RegionSliceDataset(items, num_regions=3, tilt=1.0).set_random_state(0)
    tilted = tilted_set[0]
    assert [item["tilt_bounds"] for item in tilted_set.items] == [[5, 35]] * len(items), "the item's own slab"
    assert (plain["slice_axis"], plain["slice_index"]) == (tilted["slice_axis"], tilted["slice_index"]), "same draw"
    assert not torch.equal(plain["image"], tilted["image"]), "cut at an angle"
    assert tilted["region_masks"].flatten(1).sum(-1).gt(0).all(), "regions still come from the tilted label map"
