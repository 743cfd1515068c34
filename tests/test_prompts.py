"""Prompt forms, their combinations, batching and validation (acceptance d and f)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from medpclip.networks import RegionPrompts

B, P, SIZE = 2, 3, 128
FORMS = ("points", "negatives", "box", "mask")


def make_prompts(forms: tuple[str, ...]) -> RegionPrompts | None:
    """``P`` different prompts per image combining the given forms (all inside a 128 px image)."""
    if not forms:
        return None
    g = torch.Generator().manual_seed(len(forms))
    kwargs = {}
    if "points" in forms or "negatives" in forms:
        pts = torch.rand(B, P, 2, 2, generator=g) * (SIZE - 1)
        labels = torch.tensor([1, 0 if "negatives" in forms else -1]).expand(B, P, 2).clone()
        if "points" not in forms:
            labels[..., 0] = 0
        kwargs.update(points=pts, point_labels=labels)
    if "box" in forms:
        corner = torch.rand(B, P, 2, generator=g) * 60
        kwargs["boxes"] = torch.cat([corner, corner + 20 + torch.rand(B, P, 2, generator=g) * 40], -1)
    if "mask" in forms:
        masks = torch.zeros(B, P, SIZE, SIZE)
        for b, p in itertools.product(range(B), range(P)):
            i, j = 10 + 30 * p, 10 + 20 * b
            masks[b, p, i : i + 25, j : j + 40] = 1
        kwargs["masks"] = masks
    return RegionPrompts(**kwargs)


COMBOS = [c for r in range(len(FORMS) + 1) for c in itertools.combinations(FORMS, r)]


@pytest.mark.parametrize("forms", COMBOS, ids=lambda c: "+".join(c) or "none")
def test_every_prompt_combination_has_the_right_shapes(tiny_model, images, forms):
    prompts = make_prompts(forms)
    with torch.inference_mode():
        enc, masks = tiny_model(images, prompts)
    p = 1 if prompts is None else P
    assert enc.global_embeds.shape == (B, 256)
    assert enc.region_embeds.shape == (B, p, 256)
    assert enc.patch_tokens.shape == (B, 64, 192)
    assert masks.shape == (B, p, SIZE // 4, SIZE // 4)
    assert torch.isfinite(enc.region_embeds).all() and torch.isfinite(masks).all()
    assert enc.prompts.dense.shape == (B, p, 64, 32)


@pytest.mark.parametrize("mode", ["medpclip", "global", "crop", "alpha"])
@pytest.mark.parametrize("forms", [("points", "negatives"), ("box",), ("mask", "points"), ("box", "mask")])
def test_batched_prompts_equal_one_by_one(make_model, images, mode, forms):
    model = make_model(mode)
    prompts = make_prompts(forms)
    with torch.inference_mode():
        enc, masks = model(images, prompts)
        for p in range(P):
            one, one_mask = model(images, prompts.select(p))
            torch.testing.assert_close(one.region_embeds[:, 0], enc.region_embeds[:, p], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(one_mask[:, 0], masks[:, p], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(one.global_embeds, enc.global_embeds, atol=1e-5, rtol=1e-4)


def test_different_prompts_give_different_region_embeddings_once_gates_open(make_model, images):
    model = make_model()
    with torch.inference_mode():
        enc = model.encode_image(images, make_prompts(("box",)))
    assert not torch.allclose(enc.region_embeds[:, 0], enc.region_embeds[:, 1], atol=1e-3)


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        (RegionPrompts(points=torch.tensor([[[[5.0, 200.0]]]] * 2)), "outside the image"),
        (RegionPrompts(points=torch.tensor([[[[-1.0, 3.0]]]] * 2)), "outside the image"),
        (RegionPrompts(boxes=torch.tensor([[[10.0, 50.0, 40.0, 20.0]]] * 2)), "reversed"),
        (RegionPrompts(boxes=torch.tensor([[[10.0, 10.0, 40.0, 400.0]]] * 2)), "outside the image"),
        (RegionPrompts(masks=torch.zeros(2, 1, SIZE, SIZE)), "empty"),
        (RegionPrompts(masks=torch.ones(2, 1, 64, 64)), "masks should have shape"),
        (RegionPrompts(masks=torch.ones(2, 1, SIZE, SIZE) * 3), r"\[0, 1\]"),
        (RegionPrompts(points=torch.tensor([[[[float("nan"), 3.0]]]] * 2)), "NaN"),
        (RegionPrompts(points=torch.ones(2, 1, 3)), "points should have shape"),
        (RegionPrompts(boxes=torch.ones(3, 1, 4)), "3 images"),
        (RegionPrompts(points=torch.ones(2, 1, 1, 2), point_labels=torch.full((2, 1, 1), 7)), "point_labels"),
    ],
)
def test_bad_prompts_raise_a_clear_value_error(tiny_model, images, prompts, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.encode_image(images, prompts)


@pytest.mark.parametrize(
    ("bad_images", "message"),
    [
        (torch.full((1, 1, SIZE, SIZE), float("nan")), "NaN"),
        (torch.rand(1, 1, 64, 64), "128x128"),
        (torch.rand(1, 2, SIZE, SIZE), "channels"),
        (torch.rand(SIZE, SIZE), "shape"),
    ],
)
def test_bad_images_raise_a_clear_value_error(tiny_model, bad_images, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.encode_image(bad_images)


def test_padding_points_are_ignored(tiny_model, images):
    one = RegionPrompts(points=torch.tensor([[[[40.0, 50.0]]]] * 2))
    padded = RegionPrompts(
        points=torch.tensor([[[[40.0, 50.0], [999.0, -5.0]]]] * 2), point_labels=torch.tensor([[[1, -1]]] * 2)
    )
    with torch.inference_mode():
        a, b = tiny_model.encode_image(images, one), tiny_model.encode_image(images, padded)
    torch.testing.assert_close(a.region_embeds, b.region_embeds, atol=1e-5, rtol=1e-4)


def test_mask_tokens_code_a_masks_centroid_and_extent(images):
    """With ``mask_tokens`` a mask prompt also gives three sparse tokens: the Fourier code of its centroid and of its
    first and last row/column. Without (models saved before the option) it gives none, and no parameter for them."""
    from medpclip.networks import build_model

    torch.manual_seed(0)
    model = build_model("tiny", mask_tokens=True).eval()
    masks = torch.zeros(B, 1, SIZE, SIZE)
    masks[0, 0, 10:20, 30:34] = 1  # centroid (14.5, 31.5), rows 10..19, columns 30..33
    masks[1, 0, 10:20, 30:31] = 1  # a sliver of the same patch: centroid (14.5, 30)
    encoder = model.prompt_encoder
    with torch.inference_mode():
        sparse = model.encode_image(images, RegionPrompts(masks=masks)).prompts.sparse
        expected = torch.tensor([[14.5, 31.5], [10.0, 30.0], [19.0, 33.0]])
        torch.testing.assert_close(sparse[0, 0], encoder.positional_code(expected) + encoder.mask_embed.weight)
    assert not torch.allclose(sparse[0, 0, 0], sparse[1, 0, 0]), "one patch, two positions"
    plain = build_model("tiny", mask_tokens=False)
    assert plain.prompt_encoder(RegionPrompts(masks=masks), B).sparse.shape[2] == 0
    assert not any("mask_embed" in name for name in plain.state_dict())


@pytest.mark.parametrize("forms", COMBOS[1:], ids=lambda c: "+".join(c))
def test_raster_and_region_map_match_a_drawing_at_full_resolution(tiny_model, forms):
    """The encoder draws only the channels a prompt has (a click's Gaussian as two 1D factors) and averages them onto
    four times the patch grid; a plain drawing of all four channels at full resolution, averaged afterwards, must
    give the same raster, and the same region map (positive union, or the whole image, minus the negative heat)."""
    prompts = make_prompts(forms)
    encoder = tiny_model.prompt_encoder
    with torch.inference_mode():
        encoded = encoder(prompts, B)
    axis = torch.arange(SIZE, dtype=torch.float32)
    full = torch.zeros(B, P, 4, SIZE, SIZE)
    if prompts.points is not None:
        pts = prompts.points[..., None, None, :]  # [B, P, K, 1, 1, 2]
        squared = (axis.view(SIZE, 1) - pts[..., 0]) ** 2 + (axis.view(1, SIZE) - pts[..., 1]) ** 2
        heat = torch.exp(-squared / (2 * encoder.point_sigma**2))  # [B, P, K, H, W]
        for channel, label in ((0, 1), (1, 0)):
            full[:, :, channel] = (heat * (prompts.point_labels == label)[..., None, None]).amax(2)
    if prompts.boxes is not None:
        for b, p in itertools.product(range(B), range(P)):
            i0, j0, i1, j1 = prompts.boxes[b, p].tolist()
            full[b, p, 2, math.ceil(i0) : math.floor(i1) + 1, math.ceil(j0) : math.floor(j1) + 1] = 1
    if prompts.masks is not None:
        full[:, :, 3] = prompts.masks
    grid = 4 * encoder.grid
    expected = torch.nn.functional.interpolate(full.flatten(0, 1), size=grid, mode="area").unflatten(0, (B, P))
    torch.testing.assert_close(encoded.raster, expected, atol=1e-6, rtol=1e-5)
    positive = torch.maximum(full[:, :, 0], full[:, :, 2:].amax(2))
    positive[positive.flatten(2).amax(-1) == 0] = 1  # no positive evidence: the whole image
    torch.testing.assert_close(encoded.region_map, positive * (1 - full[:, :, 1]), atol=1e-6, rtol=1e-5)


def test_take_keeps_the_chosen_prompts_of_every_field_in_order():
    prompts = make_prompts(FORMS)
    taken = prompts.take([2, 0])
    for name in ("points", "point_labels", "boxes", "masks"):
        field = getattr(prompts, name)
        assert torch.equal(getattr(taken, name), torch.stack([field[:, 2], field[:, 0]], dim=1)), name
    assert taken.batch_shape == (B, 2)


def test_repeat_copies_every_field_batch_after_batch_as_tensors_repeat():
    prompts = make_prompts(FORMS)
    copied = prompts.repeat(3)
    for name in ("points", "point_labels", "boxes", "masks"):
        field = getattr(prompts, name)
        assert torch.equal(getattr(copied, name), torch.cat([field] * 3)), name
    assert copied.batch_shape == (3 * B, prompts.batch_shape[1])
    assert RegionPrompts(masks=prompts.masks).repeat(2).points is None, "an absent field stays absent"


def test_dense_image_lets_the_dense_map_read_the_image(tmp_path):
    """With ``dense_image`` the dense prompt map of one mask changes with the image under it (it tells on which side
    of an edge inside a patch the mask lies); without, it does not. The option survives a checkpoint round trip."""
    from medpclip.networks import build_model, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    masks = torch.zeros(1, 1, SIZE, SIZE)
    masks[0, 0, 40:60, 60:64] = 1  # a strip left of column 64 ...
    left_dark, right_dark = torch.ones(1, 1, SIZE, SIZE), torch.ones(1, 1, SIZE, SIZE)
    left_dark[..., :62], right_dark[..., 66:] = 0, 0  # ... beside a dark half on either side, inside one patch
    for option in (True, False):
        encoder = build_model("tiny", dense_image=option).prompt_encoder.eval()
        with torch.inference_mode():
            a = encoder(RegionPrompts(masks=masks), 1, left_dark).dense
            b = encoder(RegionPrompts(masks=masks), 1, right_dark).dense
        assert torch.allclose(a, b) is not option
    model = build_model("tiny", dense_image=True)
    with pytest.raises(ValueError, match="pass the images"):
        model.prompt_encoder(RegionPrompts(masks=masks), 1)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "model.pt"))
    assert loaded.config["dense_image"] is True
    assert loaded.prompt_encoder.dense_net[0].in_channels == 5
