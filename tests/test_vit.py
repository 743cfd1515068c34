"""Vision tower: presets, prefix/suffix split, spatial_dims as a parameter, clear construction errors."""

from __future__ import annotations

import pytest
import torch

from medpclip.networks.vit import (
    VIT_PRESETS,
    VisionTransformer,
    ViTConfig,
    rope_angles,
    rotate,
    set_stochastic_depth,
)


def test_prefix_then_suffix_equals_the_full_pass():
    tower = VisionTransformer(VIT_PRESETS["tiny"], split=2).eval()
    images = torch.rand(2, 3, 128, 128)
    with torch.inference_mode():
        tokens, kvs = tower.forward_suffix(tower.forward_prefix(images))
        full = tower(images)
    torch.testing.assert_close(tokens, full, atol=0, rtol=0)
    assert tokens.shape == (2, 1 + 64, 192)
    assert len(kvs) == 4 and kvs[0][0].shape == (2, 3, 65, 64)


def test_three_dimensional_tower_runs():
    config = ViTConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2, in_channels=1, spatial_dims=3)
    tower = VisionTransformer(config).eval()
    with torch.inference_mode():
        tokens = tower(torch.rand(1, 1, 32, 32, 32))
    assert tokens.shape == (1, 1 + 4**3, 32)


@pytest.mark.parametrize(
    ("config", "split", "message"),
    [
        (ViTConfig(width=100, heads=3), None, "divisible by heads"),
        (ViTConfig(image_size=100), None, "divisible by patch_size"),
        (VIT_PRESETS["tiny"], 9, "split"),
    ],
)
def test_bad_tower_settings_are_clear_errors(config, split, message):
    with pytest.raises(ValueError, match=message):
        VisionTransformer(config, split=split)


def test_the_fine_grid_preset_runs_the_whole_model_on_four_times_the_patches():
    from medpclip.networks import build_model
    from medpclip.networks.prompts import RegionPrompts

    model = build_model("tiny", vision="tiny-p8").eval()
    prompts = RegionPrompts(boxes=torch.tensor([[[10.0, 10.0, 60.0, 70.0]]]))
    with torch.inference_mode():
        encoding = model.encode_image(torch.rand(1, 1, 128, 128), prompts)
        logits = model.decode_masks(encoding)
    assert encoding.patch_tokens.shape == (1, 16 * 16, 192)
    assert encoding.region_embeds.shape == (1, 1, 256)
    assert logits.shape[-2:] == (64, 64), "mask logits at four times the 16 x 16 grid"


def test_rotary_logits_depend_only_on_the_offset_between_query_and_key():
    q, k = torch.randn(2, 3, 1, 64), torch.randn(2, 3, 1, 64)
    here, there, shift = torch.tensor([[1.0, 2.0]]), torch.tensor([[4.0, 7.0]]), torch.tensor([[2.0, -3.0]])

    def logit(p_query, p_key):
        return rotate(q, rope_angles(p_query, 64)) @ rotate(k, rope_angles(p_key, 64)).transpose(-1, -2)

    torch.testing.assert_close(logit(here, there), logit(here + shift, there + shift))
    assert not torch.allclose(logit(here, there), logit(here, there + shift)), "the offset itself must matter"


def test_rotary_tower_names_a_shifted_region_nearly_as_before_and_an_absolute_one_does_not():
    from medpclip.networks import build_model
    from medpclip.networks.prompts import RegionPrompts

    torch.manual_seed(0)
    image = torch.zeros(1, 1, 128, 128)
    image[..., 40:70, 30:80] = torch.rand(30, 50)
    mask = torch.zeros(1, 2, 128, 128)
    mask[..., 45:60, 35:60] = 1

    def change(vision: str) -> float:
        model = build_model("tiny", vision=vision).eval()
        with torch.inference_mode():
            before = model.encode_image(image, RegionPrompts(masks=mask)).region_embeds
            # two patches down, one right
            moved_image, moved_mask = (torch.roll(t, (32, 16), (2, 3)) for t in (image, mask))
            after = model.encode_image(moved_image, RegionPrompts(masks=moved_mask)).region_embeds
        return float((after - before).norm() / before.norm())

    rotary, absolute = change("tiny-rope"), change("tiny")
    # not exactly 0: the [CLS] token stands nowhere, so what it reads depends on where things are
    assert rotary < 0.05 and rotary < absolute / 5, (rotary, absolute)


def test_rotary_tower_keeps_its_outputs_through_a_checkpoint(tmp_path):
    from medpclip.networks import build_model, load_checkpoint, save_checkpoint

    model = build_model("tiny", vision="tiny-rope").eval()
    assert model.vision.pos_embed is None
    path = save_checkpoint(model, tmp_path / "rope.pt")
    images = torch.rand(1, 3, 128, 128)
    with torch.inference_mode():
        torch.testing.assert_close(load_checkpoint(path).eval().vision(images), model.vision(images))


@pytest.mark.parametrize(
    "config",
    [
        ViTConfig(image_size=32, patch_size=8, width=24, depth=1, heads=4, rope=True),  # head width 6
        ViTConfig(image_size=32, patch_size=8, width=32, depth=1, heads=2, spatial_dims=3, rope=True),
    ],
)
def test_rotary_positions_need_a_2d_tower_with_head_width_divisible_by_4(config):
    with pytest.raises(ValueError, match="rotary positions"):
        VisionTransformer(config)


def test_stochastic_depth_drops_branches_while_training_and_never_at_inference():
    tower = VisionTransformer(VIT_PRESETS["tiny"])
    images = torch.rand(4, 3, 128, 128)
    with torch.no_grad():
        plain = tower.eval()(images)
        set_stochastic_depth(tower, 0.5)
        chances = [getattr(block.drop_path, "drop_prob", 0.0) for block in tower.blocks]
        assert chances == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
        torch.testing.assert_close(tower.eval()(images), plain, atol=0, rtol=0)
        torch.manual_seed(0)
        first, second = tower.train()(images), tower(images)
    assert not torch.allclose(first, second), "residual branches are dropped at random while training"
    set_stochastic_depth(tower, 0.0)
    assert all(isinstance(block.drop_path, torch.nn.Identity) for block in tower.blocks)
