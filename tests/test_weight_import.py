"""Importing open_clip and timm ViT-B/16 image towers (acceptance a). Random weights, no download."""

from __future__ import annotations

import open_clip
import pytest
import timm
import torch

from medpclip.networks import build_model, import_vision_weights


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def test_open_clip_vit_b16_import_reproduces_the_image_embedding(pixels, tmp_path):
    torch.manual_seed(0)
    reference = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    path = tmp_path / "open_clip_vit_b16.pt"
    torch.save(reference.state_dict(), path)  # a full CLIP checkpoint: visual.* and text keys
    model = build_model("base-openai").eval()
    report = import_vision_weights(model, path)
    assert report.source == "open_clip" and report.projection_loaded
    assert any(k.startswith("transformer.") for k in report.ignored), "text-tower keys should be reported"
    with torch.inference_mode():
        expected = reference.encode_image(pixels)
        got = model.encode_image(pixels).global_embeds
    assert (got - expected).abs().max() < 1e-4


def test_timm_vit_base_patch16_224_import_reproduces_the_features(pixels, tmp_path):
    torch.manual_seed(0)
    reference = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    head = torch.randn(512, 768) * 0.02  # BiomedCLIP's open_clip head: visual.head.proj (768 -> 512, no bias)
    state = {f"visual.trunk.{k}": v for k, v in reference.state_dict().items()}
    state["visual.head.proj.weight"] = head
    model = build_model("base").eval()
    report = import_vision_weights(model, state)
    assert report.source == "timm" and report.projection_loaded
    assert "head.weight" in report.ignored
    with torch.inference_mode():
        features = reference.forward_head(reference.forward_features(pixels), pre_logits=True)  # [B, 768]
        enc = model.encode_image(pixels)
        ours = model.vision(pixels)[:, 0]
    assert (ours - features).abs().max() < 1e-4
    assert (enc.global_embeds - features @ head.T).abs().max() < 1e-4


def test_bare_timm_state_dict_without_projection_loads_the_tower():
    reference = timm.create_model("vit_base_patch16_224", pretrained=False)
    model = build_model("base")
    report = import_vision_weights(model, reference.state_dict())
    assert report.loaded == len(model.vision.state_dict()) and not report.projection_loaded
    torch.testing.assert_close(model.vision.pos_embed, reference.pos_embed)


def test_mismatched_preset_is_a_clear_error():
    reference = open_clip.create_model("ViT-B-16", pretrained=None)
    with pytest.raises(ValueError, match="base-openai"):
        import_vision_weights(build_model("base"), reference.state_dict())
    with pytest.raises(ValueError, match="neither an open_clip nor a timm"):
        import_vision_weights(build_model("tiny"), {"foo": torch.zeros(1)})
    with pytest.raises(ValueError, match="does not exist"):
        import_vision_weights(build_model("tiny"), "/nonexistent/weights.pt")
