"""Held-out metrics: region-level and image-level zero-shot accuracy, left/right discrimination, region–text
retrieval and Dice after simulated clicks. Every accuracy comes with its chance level."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medpclip.data.dataset import RegionBatch
from medpclip.engines.interaction import add_clicks, center_clicks, next_clicks
from medpclip.inference.views import region_embeddings
from medpclip.knowledge import KnowledgeBase
from medpclip.networks.model import MedPCLIP
from medpclip.networks.prompts import RegionPrompts

__all__ = [
    "AREA_BINS",
    "NAMING_PROMPTS",
    "RegionScores",
    "class_embeddings",
    "region_scores",
    "region_metrics",
    "summarise_regions",
    "image_zero_shot",
    "interactive_dice",
]

# region size as a fraction of the slice: below 0.25 % (about 41 px on a 128-px slice) is "small", from 1 % "large"
AREA_BINS = {"small": (0.0, 0.0025), "medium": (0.0025, 0.01), "large": (0.01, math.inf)}
# how a named region is prompted: by its mask (an uploaded or finished segmentation), or as an annotator clicks it
# (one click at its centre, the voxel farthest from its border)
NAMING_PROMPTS = ("mask", "click")


@torch.no_grad()
def class_embeddings(
    model: MedPCLIP, knowledge: KnowledgeBase, entry_ids: Sequence[str], modality: str | None = None
) -> torch.Tensor:
    """``[C, E]`` normalised mean of each class's normalised prompt-ensemble embeddings."""
    out = []
    for entry_id in entry_ids:
        texts = knowledge.prompt_ensemble(entry_id, modality)
        out.append(F.normalize(F.normalize(model.encode_text(texts), dim=-1).mean(0), dim=-1))
    return torch.stack(out)


@dataclass
class RegionScores:
    """Similarities of ``n`` evaluated regions to ``c`` classes and what is known of each region.

    Attributes:
        sims: ``[n, c]`` cosine similarity of each region embedding to each class's prompt ensemble.
        truth: the true class index of each region.
        guesses: the position-only (atlas lookup) guess of each displaced region, else ``None``.
        nearest: the nearest-training-slice class ranking of each registered region, else ``None``.
        visible: whether each region's slice shows the side (not sagittal).
        areas: each region's share of its slice.
    """

    sims: torch.Tensor
    truth: list[int]
    guesses: list[str | None]
    nearest: list[list[str] | None]
    visible: list[bool]
    areas: list[float]

    @property
    def ranks(self) -> torch.Tensor:
        """``[n]`` how many classes score above each region's true class (0: named right)."""
        truth = torch.tensor(self.truth, device=self.sims.device)
        return (self.sims > self.sims.gather(1, truth[:, None])).sum(1)

    def twin_hits(self, knowledge: KnowledgeBase, class_ids: Sequence[str]) -> list[tuple[int, bool]]:
        """``(row, true class above its contralateral twin)`` for each region whose twin is one of ``class_ids``."""
        index = {c: i for i, c in enumerate(class_ids)}
        out = []
        for row, t in enumerate(self.truth):
            twin = knowledge.contralateral(class_ids[t])
            if twin in index:
                out.append((row, bool(self.sims[row, t] > self.sims[row, index[twin]])))
        return out


@torch.no_grad()
def region_scores(
    model: MedPCLIP,
    batches: Iterable[RegionBatch],
    knowledge: KnowledgeBase,
    class_ids: Sequence[str],
    modality: str | None = None,
    prompt: str = "mask",
    views: int = 1,
) -> RegionScores:
    """Embed the regions of ``batches`` that belong to ``class_ids``, each prompted as ``prompt`` says (one of
    :data:`NAMING_PROMPTS`) and named from ``views`` views of its slice (:func:`region_embeddings`), and compare them
    with each class's prompt ensemble."""
    if prompt not in NAMING_PROMPTS:
        raise ValueError(f"regions are named from one of {', '.join(NAMING_PROMPTS)}, not {prompt!r}.")
    model.eval()
    index = {c: i for i, c in enumerate(class_ids)}
    embeds, truth, guesses, visible, nearest, areas = [], [], [], [], [], []
    for batch in batches:
        prompts = center_clicks(batch.masks) if prompt == "click" else RegionPrompts(masks=batch.masks)
        region_embeds = region_embeddings(model, batch.images, prompts, views)
        area = (batch.masks > 0.5).flatten(2).float().mean(-1)  # [B, R] share of the slice
        for b, ids in enumerate(batch.entry_ids):
            for r, entry_id in enumerate(ids):
                if entry_id in index:
                    embeds.append(region_embeds[b, r])
                    truth.append(index[entry_id])
                    guesses.append(batch.position_guess[b][r] if batch.position_guess else None)
                    nearest.append(batch.nearest_training[b][r] if batch.nearest_training else None)
                    visible.append(batch.laterality_visible[b] if batch.laterality_visible else True)
                    areas.append(float(area[b, r]))
    if not embeds:
        raise ValueError("no evaluated region belongs to the given classes.")
    sims = torch.stack(embeds) @ class_embeddings(model, knowledge, list(class_ids), modality).T
    return RegionScores(sims, truth, guesses, nearest, visible, areas)


@torch.no_grad()
def region_metrics(
    model: MedPCLIP,
    batches: Iterable[RegionBatch],
    knowledge: KnowledgeBase,
    class_ids: Sequence[str],
    *,
    modality: str | None = None,
    n_way: int = 10,
    seed: int = 0,
    prompt: str = "mask",
    views: int = 1,
) -> dict[str, float]:
    """Zero-shot naming of regions prompted as ``prompt`` says (by their masks by default), each from ``views``
    views of its slice, over the classes ``class_ids`` of a label source: :func:`summarise_regions` of
    :func:`region_scores`."""
    scores = region_scores(model, batches, knowledge, class_ids, modality, prompt, views)
    return summarise_regions(scores, knowledge, class_ids, n_way=n_way, seed=seed)


def summarise_regions(
    scores: RegionScores, knowledge: KnowledgeBase, class_ids: Sequence[str], *, n_way: int = 10, seed: int = 0
) -> dict[str, float]:
    """Metrics of :class:`RegionScores` (of one model, or averaged over several).

    Returns top-1/top-5 over all classes, top-1 among ``n_way`` choices (the true class and random others),
    the same ``n_way`` figure per region size (:data:`AREA_BINS`, with the number of regions in each),
    left/right accuracy (true class vs its contralateral structure, where both are classes, on slices that show
    the side; ``left_right_all_slices`` adds sagittal slices, where twins look alike), text->region
    retrieval R@1/R@5 (per class present: is a region of that class among the K regions most similar to its
    text?), each with its chance level, and the number of regions; for displaced samples also the position-only
    baseline (the atlas label under the mask, exactly right, and for lateral regions);
    for registered samples that carry ``nearest_training`` rankings, the nearest-training-slice baseline (top-1 and
    ``n_way``: what an atlas lookup on the nearest slice the model was trained on names, i.e. memorising the
    training slices by position).
    """
    class_ids = list(class_ids)
    sims, truth, guesses, nearest = scores.sims, scores.truth, scores.guesses, scores.nearest
    visible, areas = scores.visible, scores.areas
    truth_t = torch.tensor(truth, device=sims.device)
    n, c = sims.shape
    ranks = scores.ranks  # 0 = best
    rng = np.random.default_rng(seed)
    way_hits, nearest_hits = [], []
    for row, t in enumerate(truth):
        others = rng.choice([k for k in range(c) if k != t], size=min(n_way - 1, c - 1), replace=False)
        way_hits.append(bool(sims[row, t] > sims[row, others].max()))
        if nearest[row] is not None:  # the lookup ranks only the classes under the mask; an absent class is last
            place = {e: i for i, e in enumerate(nearest[row])}
            rank = place.get(class_ids[t], math.inf)
            nearest_hits.append(rank < min(place.get(class_ids[o], math.inf) for o in others))
    by_area = {}
    for name, (lo, hi) in AREA_BINS.items():
        hits = [h for h, a in zip(way_hits, areas, strict=True) if lo <= a < hi]
        by_area[f"top1_{n_way}way_{name}"] = float(np.mean(hits)) if hits else float("nan")
        by_area[f"regions_{name}"] = len(hits)
    lr_hits, lr_rows, lr_all = [], [], []  # left/right counts where the slice shows the side (not sagittal)
    for row, hit in scores.twin_hits(knowledge, class_ids):
        lr_all.append(hit)
        if visible[row]:
            lr_hits.append(hit)
            lr_rows.append(row)
    present = sorted(set(truth))
    text_ranks = []
    for k in present:  # regions ranked by similarity to class k's text
        order = torch.argsort(sims[:, k], descending=True)
        text_ranks.append(int((truth_t[order] == k).nonzero()[0, 0]))
    text_ranks_np = np.array(text_ranks)
    position = {}
    if any(g is not None for g in guesses):  # the atlas-lookup baseline of displaced samples
        right = [g == class_ids[t] for g, t in zip(guesses, truth, strict=True)]

        def same_side(row: int) -> bool:  # the atlas label under the mask lies on the region's side
            guess = guesses[row]
            return guess is not None and knowledge[guess].laterality == knowledge[class_ids[truth[row]]].laterality

        position = {
            "position_only_top1": float(np.mean(right)),
            "position_only_left_right": float(np.mean([same_side(r) for r in lr_rows])) if lr_rows else float("nan"),
        }
    nearest_baseline = {}
    if nearest_hits:  # the nearest-training-slice lookup of registered samples
        known = [(r, t) for r, t in zip(nearest, truth, strict=True) if r is not None]
        nearest_baseline = {
            "nearest_training_top1": float(np.mean([bool(r) and r[0] == class_ids[t] for r, t in known])),
            f"nearest_training_top1_{n_way}way": float(np.mean(nearest_hits)),
        }
    return {
        **position,
        **nearest_baseline,
        "regions": n,
        "classes": c,
        "top1": float((ranks == 0).float().mean()),
        "top1_chance": 1 / c,
        "top5": float((ranks < 5).float().mean()),
        "top5_chance": min(5 / c, 1.0),
        f"top1_{n_way}way": float(np.mean(way_hits)),
        f"top1_{n_way}way_chance": 1 / min(n_way, c),
        **by_area,
        "left_right": float(np.mean(lr_hits)) if lr_hits else float("nan"),
        "left_right_chance": 0.5,
        "left_right_regions": len(lr_hits),
        "left_right_all_slices": float(np.mean(lr_all)) if lr_all else float("nan"),
        "retrieval_r1": float((text_ranks_np < 1).mean()),
        "retrieval_r5": float((text_ranks_np < 5).mean()),
        "retrieval_r1_chance": float(np.mean([np.mean(truth_t.cpu().numpy() == k) for k in present])),
    }


@torch.no_grad()
def image_zero_shot(
    model: MedPCLIP,
    images: torch.Tensor,
    labels: Sequence[str],
    knowledge: KnowledgeBase,
    class_ids: Sequence[str],
    names: Sequence[str] = (),
) -> dict[str, object]:
    """Image-level zero-shot accuracy: global embeddings of ``images [N, 1, S, S]`` against ``class_ids`` (e.g.
    modalities); ``labels`` are the true class ids. With the images' ``names``, ``misses`` lists each wrong answer
    as ``"name: true -> predicted"``."""
    model.eval()
    class_ids = list(class_ids)
    sims = (
        F.normalize(model.encode_image(images).global_embeds, dim=-1) @ class_embeddings(model, knowledge, class_ids).T
    )
    predicted = [class_ids[i] for i in sims.argmax(1).tolist()]
    hits = [p == t for p, t in zip(predicted, labels, strict=True)]
    out = {"accuracy": float(np.mean(hits)), "chance": 1 / len(class_ids), "images": len(hits)}
    if names:
        out["misses"] = [f"{n}: {t} -> {p}" for n, t, p in zip(names, labels, predicted, strict=True) if p != t]
    return out


@torch.no_grad()
def interactive_dice(
    model: MedPCLIP, images: torch.Tensor, targets: torch.Tensor, clicks: Sequence[int] = (1, 3, 5)
) -> dict[int, float]:
    """Mean Dice after each number of simulated clicks (first click at the centre of the target, every next one
    at the centre of the largest error, previous logits fed back).

    Args:
        images: ``[N, 1, S, S]``; targets: ``[N, 1, S, S]`` bool, one structure per image.
    """
    model.eval()
    targets = targets.to(model.visual_proj.weight.device)  # validation may run on a GPU
    n, _, size, _ = targets.shape
    device = targets.device
    prompts = RegionPrompts(
        points=torch.zeros(n, 1, 0, 2, device=device),
        point_labels=torch.zeros(n, 1, 0, dtype=torch.long, device=device),
    )
    prefix = model.encode_prefix(images)
    pred = torch.zeros_like(targets[:, 0], dtype=torch.bool)
    logits, out = None, {}
    for k in range(1, max(clicks) + 1):
        points, labels = next_clicks(pred, targets[:, 0], "center")
        prompts = add_clicks(prompts, points.view(n, 1, 2), labels.view(n, 1))
        enc = model.encode_image(images, prompts, prefix=prefix)
        logits = model.decode_masks(enc, prev_mask_logits=logits)
        pred = F.interpolate(logits, size=(size, size), mode="bilinear")[:, 0] > 0
        if k in clicks:
            inter = (pred & targets[:, 0]).flatten(1).sum(1).float()
            total = pred.flatten(1).sum(1) + targets[:, 0].flatten(1).sum(1)
            out[k] = float((2 * inter / total.clamp(min=1)).mean())
    return out
