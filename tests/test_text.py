"""Text tower: offline MiniLM default, a local Hugging Face directory, cached features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medpclip.networks.text import TextTower, default_text_model_dir


def test_minilm_encodes_offline_and_caches(tiny_model):
    text = tiny_model.text
    texts = ["left precentral gyrus", "liver", "left precentral gyrus"]
    feats = text.features(texts)
    assert feats.shape == (3, 384)
    torch.testing.assert_close(feats[0], feats[2])
    assert set(text._cache) >= {"left precentral gyrus", "liver"}
    calls = []
    hook = text.encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        again = text.features(["liver"])
    finally:
        hook.remove()
    assert not calls, "a cached text must not run the encoder again"
    torch.testing.assert_close(again[0], feats[1])
    assert tiny_model.encode_text(texts).shape == (3, 256)


def test_minilm_features_are_semantic(tiny_model):
    f = F.normalize(tiny_model.text.features(["liver tumour", "hepatic lesion", "left hand bone"]), dim=-1)
    assert f[0] @ f[1] > f[0] @ f[2]


def test_encoder_is_frozen_and_not_checkpointed(tiny_model):
    assert not any(k.startswith("text.encoder") for k in tiny_model.state_dict())
    assert all(not p.requires_grad for p in tiny_model.text.encoder.parameters())
    assert all(p.requires_grad for p in tiny_model.text.proj.parameters())


def test_any_local_hugging_face_directory_plugs_in(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    source = default_text_model_dir()
    AutoTokenizer.from_pretrained(source, local_files_only=True).save_pretrained(tmp_path)
    AutoModel.from_pretrained(source, local_files_only=True).save_pretrained(tmp_path)
    tower = TextTower(model_dir=tmp_path, embed_dim=32)
    assert tower(["kidney"]).shape == (1, 32)


@pytest.mark.parametrize("texts", [[], [""], ["  "]])
def test_empty_texts_are_rejected(tiny_model, texts):
    with pytest.raises(ValueError, match="non-empty"):
        tiny_model.encode_text(texts)


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        TextTower(model_dir=tmp_path / "nothing", embed_dim=8)
