"""Training losses: region–text and image–text InfoNCE (with knowledge-base hard negatives and no false
negatives between equal classes) and the mask loss.

InfoNCE after CLIP (Radford et al., 2021); masked duplicates as in supervised contrastive learning
(Khosla et al., 2020); Dice + BCE as in MONAI's ``DiceCELoss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

__all__ = ["class_loss", "contrastive_loss", "location_loss", "mask_loss"]

_dice_bce = DiceCELoss(sigmoid=True, reduction="mean")


def contrastive_loss(
    embeds: torch.Tensor, text_embeds: torch.Tensor, classes: list[str], logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE between ``M`` image/region embeddings and their ``M`` texts, plus ``X`` extra negatives.

    Args:
        embeds: ``[M, E]`` image or region embeddings.
        text_embeds: ``[M + X, E]``: the positive text of embedding ``m`` at row ``m``, then extra negatives such as
            knowledge-base hard negatives.
        classes: ``M + X`` class ids (knowledge-base entries) of the texts; embedding ``m`` has class ``classes[m]``.
            Texts of an embedding's class other than its own are left out of its softmax (and vice versa): two
            regions of one class are not negatives of each other.
        logit_scale: log of the inverse temperature (CLIP's learnable scalar).

    Returns:
        the mean of the embedding->text and text->embedding cross-entropies.
    """
    m = embeds.shape[0]
    if text_embeds.shape[0] < m or len(classes) != text_embeds.shape[0]:
        raise ValueError(f"need >= {m} texts and one class per text, got {text_embeds.shape[0]} and {len(classes)}.")
    scale = logit_scale.exp().clamp(max=100)
    logits = scale * F.normalize(embeds, dim=-1) @ F.normalize(text_embeds, dim=-1).T  # [M, M + X]
    index = {c: i for i, c in enumerate(dict.fromkeys(classes))}
    ids = torch.tensor([index[c] for c in classes], device=logits.device)
    same = ids[:m, None] == ids[None, :]
    own = torch.eye(m, len(classes), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same & ~own, float("-inf"))
    targets = torch.arange(m, device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits[:, :m].T, targets)) / 2


def class_loss(
    embeds: torch.Tensor,
    class_embeds: torch.Tensor,
    targets: torch.Tensor,
    logit_scale: torch.Tensor,
    not_negative: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of ``N`` embeddings over a whole vocabulary of ``C`` class texts (CLIP's zero-shot classifier
    trained directly): every other class of the vocabulary is a negative, not only the texts of the batch.

    Args:
        embeds: ``[N, E]`` image or region embeddings.
        class_embeds: ``[C, E]`` one text embedding per class.
        targets: ``[N]`` class index of each embedding.
        logit_scale: log of the inverse temperature.
        not_negative: optional ``[N, C]`` bool, classes left out of an embedding's softmax (e.g. the contralateral
            twin on a slice that cannot show the side).
    """
    scale = logit_scale.exp().clamp(max=100)
    logits = scale * F.normalize(embeds, dim=-1) @ F.normalize(class_embeds, dim=-1).T  # [N, C]
    if not_negative is not None:
        own = F.one_hot(targets, logits.shape[1]).bool()
        logits = logits.masked_fill(not_negative & ~own, float("-inf"))
    return F.cross_entropy(logits, targets)


def mask_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice + binary cross-entropy between mask logits ``[B, P, h, w]`` and targets ``[B, P, H, W]`` (resized by
    area to the logits' resolution)."""
    small = F.interpolate(targets.float(), size=logits.shape[-2:], mode="area")
    return _dice_bce(logits.flatten(0, 1).unsqueeze(1), small.flatten(0, 1).unsqueeze(1))


def location_loss(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of ``predicted [N, 3]`` against ``targets [N, 3]`` (fractions of a volume's extent) over
    the rows whose target is known (NaN rows are skipped; none known: a zero that keeps the graph)."""
    known = torch.isfinite(targets).all(-1)
    if not known.any():
        return predicted.sum() * 0
    return F.l1_loss(predicted[known], targets[known])
