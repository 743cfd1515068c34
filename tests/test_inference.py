"""Slice geometry, the interactive slice predictor and the file pipeline the bundle's inference.json runs."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medpclip.inference import SlicePredictor, SquareFit, segment_and_classify


@pytest.mark.parametrize("shape", [(128, 128), (197, 233), (60, 20), (300, 90)])
def test_square_fit_maps_voxels_and_logits_back_to_the_slice(shape):
    fit = SquareFit(*shape, size=128)
    image = torch.zeros(1, *shape)
    image[0, shape[0] // 3, shape[1] // 2] = 1
    placed = fit.image(image, mode="nearest" if max(shape) <= 128 else "area")
    assert placed.shape == (1, 128, 128)
    point = fit.points(torch.tensor([[shape[0] // 3, shape[1] // 2]]))[0]
    peak = torch.tensor(np.unravel_index(int(placed[0].argmax()), (128, 128)), dtype=torch.float32)
    assert (point - peak).abs().max() <= 1.0
    logits = torch.full((32, 32), -1.0)
    back = fit.logits_back(logits)
    assert back.shape == shape and torch.allclose(back, torch.tensor(-1.0))


def test_predictor_segments_classifies_and_refines_on_the_cached_prefix(make_model):
    predictor = SlicePredictor(make_model())
    slice_ = torch.rand(1, 150, 100, generator=torch.Generator().manual_seed(0))
    predictor.set_image(slice_)
    prefix = predictor._prefix
    first = predictor.segment(points=[(70, 50)])
    assert first.shape == (150, 100)
    refined = predictor.segment(points=[(70, 50)], negatives=[(10, 10)], prev_logits=first)
    assert refined.shape == (150, 100) and not torch.equal(first, refined)
    assert predictor._prefix is prefix, "clicks must not recompute the prompt-independent prefix"
    ranking = predictor.classify(["liver", "spleen", "a bright round lesion"], box=(20, 10, 90, 60))
    probs = [r["probability"] for r in ranking]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4
    assert {r["label"] for r in ranking} == {"liver", "spleen", "a bright round lesion"}


def test_whole_image_classification_ranks_the_global_embedding(make_model):
    """No prompt ranks the global embedding (trained and evaluated on modality), a prompt its region embedding."""
    predictor = SlicePredictor(make_model(), naming_views=1)
    predictor.set_image(torch.rand(1, 90, 120, generator=torch.Generator().manual_seed(1)))
    labels = ["CT", "MR", "X-ray", "ultrasound"]
    encoding = predictor.encode(None)
    as_global = predictor.rank_embedding(encoding.global_embeds[0], labels)
    as_region = predictor.rank_embedding(encoding.region_embeds[0, 0], labels)
    assert as_global != as_region, "the two embeddings must rank differently for this test to tell them apart"
    assert predictor.classify(labels) == as_global
    box = (10, 10, 60, 80)
    assert predictor.classify(labels, box=box) == predictor.rank_embedding(
        predictor.encode(predictor.prompts(box=box)).region_embeds[0, 0], labels
    )


@pytest.mark.parametrize(
    "prompt, message",
    [
        ({"points": [(150, 10)]}, "outside"),
        ({"points": [(-1, 10)]}, "outside"),
        ({"box": (50, 50, 10, 10)}, "reversed"),
        ({"mask": torch.zeros(150, 100)}, "empty"),
        ({"mask": torch.ones(10, 10)}, "shape"),
    ],
)
def test_predictor_rejects_bad_prompts_in_slice_coordinates(tiny_model, prompt, message):
    predictor = SlicePredictor(tiny_model)
    predictor.set_image(torch.rand(1, 150, 100))
    with pytest.raises(ValueError, match=message):
        predictor.segment(**prompt)


def test_predictor_needs_an_image_and_labels(tiny_model):
    predictor = SlicePredictor(tiny_model)
    with pytest.raises(ValueError, match="set_image"):
        predictor.segment(points=[(1, 1)])
    predictor.set_image(torch.rand(1, 64, 64))
    with pytest.raises(ValueError, match="labels are empty"):
        predictor.classify([])


def test_pipeline_on_a_volume_writes_a_mask_with_the_volume_geometry(tmp_path, make_model):
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    volume = np.random.default_rng(0).normal(40, 30, (70, 60, 12)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "ct.nii.gz")
    summary = segment_and_classify(
        make_model(),
        tmp_path / "ct.nii.gz",
        tmp_path / "out",
        points=[(30, 25, 7)],
        box=(10, 10, 50, 45),
        labels=["liver", "spleen"],
        modality="CT",
    )
    mask = nib.load(tmp_path / "out" / "ct_mask.nii.gz")
    data = np.asarray(mask.dataobj)
    assert mask.shape == volume.shape and np.allclose(mask.affine, affine)
    assert summary["slice"] == 7 and data[..., 7].sum() > 0 and data.sum() == summary["voxels"]
    assert summary["slices"] == int(data.any((0, 1)).sum()), "propagated slices are counted"
    assert json.loads((tmp_path / "out" / "ct_labels.json").read_text())["labels"] == summary["labels"]


@pytest.mark.parametrize(
    "prompt, message",
    [
        ({"points": [(30, 25)]}, "3 coordinates"),
        ({"points": [(30, 25, 3), (31, 25, 4)]}, "different slices"),
        ({"points": [(30, 25, 40)]}, "outside"),
        ({"points": [(30, 25, 3)], "box": (1, 2, 3)}, "4 numbers"),
    ],
)
def test_pipeline_rejects_bad_clicks_and_writes_nothing(tmp_path, tiny_model, prompt, message):
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 8), np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    with pytest.raises(ValueError, match=message):
        segment_and_classify(tiny_model, tmp_path / "v.nii.gz", tmp_path / "out", labels=["liver"], **prompt)
    assert not (tmp_path / "out").exists()


def test_pipeline_reports_unreadable_and_missing_files(tmp_path, tiny_model):
    (tmp_path / "bad.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        segment_and_classify(tiny_model, tmp_path / "bad.nii.gz", tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        segment_and_classify(tiny_model, tmp_path / "missing.nii.gz", tmp_path / "out")


def test_retrieve_ranks_every_region_in_one_pass(tiny_model):
    predictor = SlicePredictor(tiny_model)
    predictor.set_image(torch.rand(1, 60, 80))
    boxes = [(0, 0, 20, 20), (30, 40, 59, 79), (10, 10, 50, 70)]
    ranked = predictor.retrieve("liver", boxes=boxes)
    assert sorted(r["index"] for r in ranked) == [0, 1, 2]
    probs = [r["probability"] for r in ranked]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4
    masks = [torch.zeros(60, 80), torch.zeros(60, 80)]
    masks[0][:30], masks[1][30:] = 1, 1
    assert len(predictor.retrieve("spleen", masks=masks)) == 2
    with pytest.raises(ValueError, match="either boxes or masks"):
        predictor.retrieve("liver")
    with pytest.raises(ValueError, match="reversed"):
        predictor.retrieve("liver", boxes=[(20, 20, 10, 10)])
