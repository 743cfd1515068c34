"""Region-prompt integration properties (acceptance b, c and e)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medpclip.data.phantoms import phantom_slice
from medpclip.networks import RegionPrompts, build_model
from medpclip.optim import parameter_groups

BOX = RegionPrompts(boxes=torch.tensor([[[10.0, 20.0, 60.0, 90.0]]] * 2))
CLICKS = RegionPrompts(
    points=torch.tensor([[[[100.0, 30.0], [20.0, 20.0]]]] * 2), point_labels=torch.tensor([[[1, 0]]] * 2)
)


def test_zero_gates_keep_the_global_embedding_when_a_prompt_is_given(tiny_model, images):
    with torch.inference_mode():
        plain = tiny_model.encode_image(images)
        boxed = tiny_model.encode_image(images, BOX)
    torch.testing.assert_close(boxed.global_embeds, plain.global_embeds, atol=0, rtol=0)
    torch.testing.assert_close(boxed.patch_tokens, plain.patch_tokens, atol=0, rtol=0)


def test_without_prompt_the_region_embedding_is_the_global_embedding(tiny_model, images):
    with torch.inference_mode():
        enc = tiny_model.encode_image(images)
    torch.testing.assert_close(enc.region_embeds[:, 0], enc.global_embeds, atol=1e-5, rtol=1e-5)


def test_global_embedding_equals_the_plain_vit(tiny_model, images):
    """The global path is the base ViT's [CLS] token projected, whatever the prompts."""
    with torch.inference_mode():
        enc = tiny_model.encode_image(images, CLICKS)
        reference = tiny_model.visual_proj(tiny_model.vision(images.expand(-1, 3, -1, -1))[:, 0])
    torch.testing.assert_close(enc.global_embeds, reference, atol=1e-5, rtol=1e-5)


def test_prefix_does_not_depend_on_the_prompt(tiny_model, images):
    split = tiny_model.vision.split
    assert split == min(tiny_model.config["fusion_layers"]) > 0
    captured = []
    hooks = [b.register_forward_hook(lambda m, i, o: captured.append(o[0])) for b in tiny_model.vision.blocks[:split]]
    try:
        with torch.inference_mode():
            for prompts in (BOX, CLICKS, None):
                tiny_model.encode_image(images, prompts)
    finally:
        for h in hooks:
            h.remove()
    per_run = [captured[i * split : (i + 1) * split] for i in range(3)]
    for a, b in zip(per_run[0], per_run[1], strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    for a, b in zip(per_run[0], per_run[2], strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("mode", ["medpclip", "global", "crop", "alpha"])
def test_cached_prefix_gives_the_same_outputs_as_a_full_pass(make_model, images, mode):
    model = make_model(mode)
    with torch.no_grad():
        prefix = model.encode_prefix(images)
        for prompts in (BOX, CLICKS):
            full, full_masks = model(images, prompts)
            cached = model.encode_image(images, prompts, prefix=prefix)
            torch.testing.assert_close(cached.region_embeds, full.region_embeds, atol=0, rtol=0)
            torch.testing.assert_close(cached.global_embeds, full.global_embeds, atol=0, rtol=0)
            torch.testing.assert_close(model.decode_masks(cached), full_masks, atol=0, rtol=0)


def test_region_embeddings_move_with_the_prompt_after_training():
    """30 steps of region-text contrast on one phantom: different regions of one image must separate (cos < 0.9)."""
    torch.manual_seed(0)
    model = build_model("tiny").train()
    image, labels = phantom_slice(size=128, seed=3)
    names = {2: "liver", 3: "left kidney", 4: "right kidney", 5: "tumour"}
    masks = torch.from_numpy(np.stack([labels == k for k in names])).float()[None]  # [1, 4, H, W]
    prompts = RegionPrompts(masks=masks)
    batch = torch.from_numpy(image)[None, None]
    texts = [f"a CT slice showing the {n}" for n in names.values()]
    optimizer = torch.optim.AdamW(parameter_groups(model, lr=1e-3))
    with torch.no_grad():
        before = F.normalize(model.encode_image(batch, prompts).region_embeds[0], dim=-1)
    for _ in range(30):
        enc = model.encode_image(batch, prompts)
        logits = model.similarity(enc.region_embeds[0], model.encode_text(texts))
        loss = F.cross_entropy(logits, torch.arange(len(texts)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after = F.normalize(model.encode_image(batch, prompts).region_embeds[0], dim=-1)
    cos_before, cos = before @ before.T, after @ after.T
    assert cos_before[0, 1] > 0.9, "untrained region features barely move with the prompt (the baseline)"
    for a, b in [(0, 1), (0, 3), (1, 3)]:  # liver, left kidney, tumour: regions of different appearance
        assert cos[a, b] < 0.9, f"{texts[a]} vs {texts[b]}: cos={cos[a, b]:.3f} after training"
    assert model.region_encoder.fusion["3"].value_gate.abs().sum() > 0, "the zero-initialised gates should open"
