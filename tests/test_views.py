"""Naming a region from several slightly moved views of its slice (medpclip.inference.views)."""

import pytest
import torch
import torch.nn.functional as F

from medpclip.inference import SlicePredictor, views
from medpclip.inference.views import MAX_ROTATION, MAX_SCALE, MAX_SHIFT, _move, region_embeddings, view_affines
from medpclip.networks.prompts import RegionPrompts


def test_views_start_with_the_slice_itself_and_never_mirror():
    affines = view_affines(8)
    assert affines.shape == (8, 3, 3) and torch.equal(affines[0], torch.eye(3))
    assert torch.equal(affines, view_affines(8)), "the same views at every call: a region is named the same way"
    linear = affines[1:, :2, :2]
    scales = torch.linalg.det(linear).sqrt()
    assert (torch.linalg.det(linear) > 0).all(), "a mirrored view would swap left and right"
    assert ((scales - 1).abs() <= MAX_SCALE + 1e-6).all() and (affines[1:, :2, 2].abs() <= MAX_SHIFT).all()
    angles = torch.rad2deg(torch.atan2(linear[:, 1, 0], linear[:, 0, 0]))
    assert (angles.abs() <= MAX_ROTATION + 1e-4).all() and len(set(angles.tolist())) == 7
    with pytest.raises(ValueError, match="at least 1"):
        view_affines(0)


def test_a_view_moves_the_image_and_every_prompt_together():
    """A bright square, its mask, a click at its centre and its box land on the same pixels of each view."""
    image = torch.zeros(1, 1, 64, 64)
    image[..., 20:30, 34:44] = 1
    prompts = RegionPrompts(
        points=torch.tensor([[[[24.5, 38.5]]]]), boxes=torch.tensor([[[20.0, 34, 29, 43]]]), masks=image[:, :1].clone()
    )
    affine = torch.tensor([[[1.0, 0, 0.25], [0, 1, -0.25], [0, 0, 1]]])  # right by 8 px, up by 8 px
    moved, moved_prompts = _move(image, prompts, affine)
    assert torch.equal(moved_prompts.masks, (moved > 0.5).float()), "the mask is moved with the image"
    assert torch.allclose(moved_prompts.points, torch.tensor([[[[16.5, 46.5]]]]))
    assert torch.allclose(moved_prompts.boxes, torch.tensor([[[12.0, 42, 21, 51]]]))
    rows, cols = torch.nonzero(moved[0, 0] > 0.5, as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (12, 21, 42, 51)
    assert torch.equal(moved_prompts.point_labels, prompts.point_labels)


def test_a_region_lost_by_the_resampling_keeps_its_own_mask():
    masks = torch.zeros(1, 1, 32, 32)
    masks[..., 10, 10] = 1  # one pixel: a rotation and scale between pixel centres can drop it
    affine = view_affines(2)[1:]
    _, moved = _move(torch.rand(1, 1, 32, 32), RegionPrompts(masks=masks), affine)
    assert moved.masks.sum() >= 1, "every region keeps at least one pixel to be named from"


def test_region_embeddings_average_views_and_one_view_is_the_model_alone(make_model, images):
    model = make_model()
    masks = torch.zeros(2, 3, 128, 128)
    masks[:, 0, 30:60, 30:60], masks[:, 1, 70:90, 20:100], masks[:, 2, 10:20, 100:120] = 1, 1, 1
    prompts = RegionPrompts(masks=masks)
    alone = region_embeddings(model, images, prompts, views=1)
    expected = F.normalize(model.encode_image(images, prompts).region_embeds, dim=-1)
    assert torch.allclose(alone, expected, atol=1e-6)
    prefix = model.encode_prefix(images)
    assert torch.allclose(region_embeddings(model, images, prompts, views=1, prefix=prefix), alone, atol=1e-5)
    several = region_embeddings(model, images, prompts, views=4)
    assert several.shape == alone.shape and torch.allclose(several.norm(dim=-1), torch.ones(2, 3))
    assert not torch.allclose(several, alone, atol=1e-4), "moved views must change what the region is called"
    assert (F.cosine_similarity(several, alone, dim=-1) > 0.5).all(), "small moves: the same region"


def test_views_encoded_together_equal_views_encoded_one_at_a_time(make_model, images, monkeypatch):
    """Several views of every image go through the model in one batch; each image keeps its own view and prompts."""
    model = make_model()
    masks = torch.zeros(2, 2, 128, 128)
    masks[0, :, 20:50, 30:70], masks[1, 0, 60:100, 10:40], masks[1, 1, 5:25, 90:120] = 1, 1, 1
    prompts = RegionPrompts(
        points=torch.tensor([[[[35.0, 50]], [[35, 50]]], [[[80, 25]], [[15, 105]]]]),
        boxes=torch.tensor([[[20.0, 30, 49, 69], [20, 30, 49, 69]], [[60, 10, 99, 39], [5, 90, 24, 119]]]),
        masks=masks,
    )
    together = region_embeddings(model, images, prompts, views=5)  # 4 moved views of 2 images in one pass
    monkeypatch.setattr(views, "MAX_IMAGES_PER_PASS", 1)
    alone = region_embeddings(model, images, prompts, views=5)
    assert torch.allclose(together, alone, atol=1e-5)


def test_the_predictor_names_from_its_views(make_model):
    slice_ = torch.rand(1, 100, 120, generator=torch.Generator().manual_seed(2))
    labels = ["liver", "spleen", "kidney"]
    one, eight = SlicePredictor(make_model(), naming_views=1), SlicePredictor(make_model(), naming_views=8)
    for predictor in (one, eight):
        predictor.set_image(slice_)
    single, averaged = one.classify(labels, box=(20, 20, 60, 70)), eight.classify(labels, box=(20, 20, 60, 70))
    assert {r["label"] for r in averaged} == set(labels) and abs(sum(r["probability"] for r in averaged) - 1) < 1e-4
    assert single != averaged, "eight views rank with other probabilities than the slice alone"
    assert one.classify(labels) == eight.classify(labels), "the whole image is ranked by its global embedding"
    with pytest.raises(ValueError, match="naming_views"):
        SlicePredictor(make_model(), naming_views=0)
