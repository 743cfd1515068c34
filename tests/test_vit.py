"""Vision tower: presets, prefix/suffix split, spatial_dims as a parameter, clear construction errors."""

from __future__ import annotations

import pytest
import torch

from medpclip.networks.vit import VIT_PRESETS, VisionTransformer, ViTConfig


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
