"""MedP-CLIP as the vision tower of a LLaVA model built from a tiny random config (no download)."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from medpclip.networks import RegionPrompts
from medpclip.networks.vision_tower import MedPCLIPVisionTower, visual_tokens


def test_visual_tokens_shapes_and_projector_gradient(make_model):
    tiny_model = make_model()
    images = torch.rand(2, 1, tiny_model.image_size, tiny_model.image_size)
    prompts = RegionPrompts(boxes=torch.tensor([[[10.0, 10.0, 60.0, 70.0]] * 3] * 2))
    width = tiny_model.vision.width
    plain = visual_tokens(tiny_model, images, prompts)
    patches = (tiny_model.image_size // tiny_model.vision.config.patch_size) ** 2
    assert plain.global_token.shape == (2, 1, width)
    assert plain.region_tokens.shape == (2, 3, width)
    assert plain.patch_tokens.shape == (2, patches, width)
    assert plain.sequence().shape == (2, 1 + 3 + patches, width)
    projector = torch.nn.Linear(width, 48)
    projected = visual_tokens(tiny_model, images, prompts, projector)
    assert projected.sequence().shape == (2, 1 + 3 + patches, 48)
    projected.sequence().square().mean().backward()
    assert projector.weight.grad is not None and projector.weight.grad.abs().sum() > 0
    # the region tokens depend on the prompt, the patch tokens do not
    other = visual_tokens(tiny_model, images, RegionPrompts(boxes=torch.tensor([[[0.0, 0.0, 20.0, 20.0]] * 3] * 2)))
    assert not torch.allclose(other.region_tokens, plain.region_tokens)
    assert torch.allclose(other.patch_tokens, plain.patch_tokens)


@pytest.mark.parametrize("prompts_per_image", [1, 2])
def test_llava_forward_with_medpclip_tower_trains_the_projector_only(make_model, prompts_per_image):
    tiny_model = make_model()
    tower = MedPCLIPVisionTower(tiny_model)
    n_image = tower.num_tokens(prompts_per_image)
    image_token = 31
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=tower.hidden_size,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=32,
            patch_size=16,
        ),
        text_config=LlamaConfig(
            vocab_size=32,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
        ),
        image_token_id=image_token,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_seq_length=n_image,
    )
    llava = LlavaForConditionalGeneration(config)
    llava.model.vision_tower = tower
    if prompts_per_image > 1:
        box = [[8.0, 8.0, 64.0, 64.0], [40.0, 40.0, 120.0, 100.0]]
        tower.prompts = RegionPrompts(boxes=torch.tensor([box, box]))
    text = torch.randint(1, 30, (2, 6))
    input_ids = torch.cat([text[:, :2], torch.full((2, n_image), image_token), text[:, 2:]], dim=1)
    pixels = torch.rand(2, 3, tiny_model.image_size, tiny_model.image_size)
    out = llava(input_ids=input_ids, pixel_values=pixels, labels=input_ids.masked_fill(input_ids == image_token, -100))
    assert out.logits.shape == (2, input_ids.shape[1], 32)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    projector_grads = [p.grad for p in llava.model.multi_modal_projector.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in projector_grads)
    assert all(p.grad is None for p in tower.parameters()), "the frozen MedP-CLIP tower gets no gradient"
    # the language model sees the image: other pixels give other logits
    with torch.no_grad():
        again = llava(input_ids=input_ids, pixel_values=torch.rand_like(pixels)).logits
    assert not torch.allclose(again, out.logits.detach())
