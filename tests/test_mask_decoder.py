"""Mask decoder: quarter-resolution logits, previous-mask refinement input."""

from __future__ import annotations

import torch

from medpclip.networks import RegionPrompts


def test_logits_are_at_quarter_resolution_and_use_the_previous_mask(tiny_model, images):
    prompts = RegionPrompts(points=torch.tensor([[[[64.0, 64.0]]]] * 2))
    with torch.inference_mode():
        enc = tiny_model.encode_image(images, prompts)
        first = tiny_model.decode_masks(enc)
        prev = torch.full((2, 1, 128, 128), -8.0)
        prev[..., 40:90, 40:90] = 8.0
        refined = tiny_model.decode_masks(enc, prev_mask_logits=prev)
    assert first.shape == (2, 1, 32, 32)
    assert refined.shape == first.shape
    assert not torch.allclose(first, refined), "the previous mask must reach the decoder"


def test_decoder_gradients_reach_prompt_encoder(tiny_model, images):
    model = tiny_model
    prompts = RegionPrompts(boxes=torch.tensor([[[10.0, 10.0, 50.0, 60.0]]] * 2))
    model.zero_grad()
    _, masks = model(images, prompts)
    masks.sum().backward()
    grad = model.prompt_encoder.dense_net[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.zero_grad()
