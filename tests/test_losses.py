"""Losses: contrastive terms with class-aware negatives, mask loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medpclip.losses import class_loss, contrastive_loss, location_loss, mask_loss

SCALE = torch.tensor(4.6)  # exp = 100


def test_aligned_embeddings_give_near_zero_loss_and_misaligned_a_large_one():
    texts = F.normalize(torch.randn(6, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    aligned = contrastive_loss(texts[:4], texts, list("abcdef"), SCALE)
    shuffled = contrastive_loss(texts[[1, 2, 3, 0]], texts, list("abcdef"), SCALE)
    assert aligned < 1e-3 < 1.0 < shuffled


def test_same_class_texts_are_not_negatives():
    g = torch.Generator().manual_seed(1)
    embeds, texts = torch.randn(3, 8, generator=g), torch.randn(5, 8, generator=g)
    with_duplicate = contrastive_loss(embeds, texts, ["a", "b", "c", "a", "d"], SCALE)
    without = contrastive_loss(embeds, texts[[0, 1, 2, 4]], ["a", "b", "c", "d"], SCALE)
    torch.testing.assert_close(with_duplicate, without)  # text 3 (class a) is masked for embedding 0


def test_gradients_reach_both_sides_and_bad_shapes_are_rejected():
    embeds = torch.randn(3, 8, requires_grad=True)
    texts = torch.randn(4, 8, requires_grad=True)
    contrastive_loss(embeds, texts, list("abcd"), SCALE).backward()
    assert embeds.grad.abs().sum() > 0 and texts.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one class per text"):
        contrastive_loss(embeds, texts, list("abc"), SCALE)


def test_mask_loss_prefers_the_right_mask():
    target = torch.zeros(1, 2, 64, 64)
    target[..., 10:40, 20:50] = 1
    good = (F.interpolate(target, size=16, mode="area") * 2 - 1) * 20
    assert mask_loss(good, target) < 0.2 < 5 < mask_loss(-good, target)  # boundary pixels are fractional


def test_class_loss_uses_the_whole_vocabulary_and_can_spare_a_twin():
    classes = F.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(2)), dim=-1)
    targets = torch.tensor([0, 3])
    right = class_loss(classes[[0, 3]], classes, targets, SCALE)
    wrong = class_loss(classes[[1, 2]], classes, targets, SCALE)
    assert right < 1e-3 < 1.0 < wrong
    # an embedding equal to class 1's text: sparing class 1 as a negative removes the loss
    confused = class_loss(classes[[1]], classes, torch.tensor([0]), SCALE)
    spared = torch.zeros(1, 5, dtype=torch.bool)
    spared[0, 1] = True
    assert class_loss(classes[[1]], classes, torch.tensor([0]), SCALE, spared) < confused
    # its own class is never spared
    own = torch.ones(1, 5, dtype=torch.bool)
    assert torch.isfinite(class_loss(classes[[0]], classes, torch.tensor([0]), SCALE, own))


def test_location_loss_skips_unknown_targets():
    predicted = torch.tensor([[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]], requires_grad=True)
    targets = torch.tensor([[0.7, 0.5, 0.2], [float("nan")] * 3])
    loss = location_loss(predicted, targets)
    assert loss.item() == pytest.approx((0.2 + 0.0 + 0.3) / 3)
    none_known = location_loss(predicted, torch.full((2, 3), float("nan")))
    none_known.backward()
    assert none_known.item() == 0 and predicted.grad is not None
