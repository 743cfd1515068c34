"""Region sampling from a 2D label map (masks, boxes, positive/negative clicks, whole-image samples) and
region captions from the knowledge base."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable

from medpclip.data.intensity import modality_family
from medpclip.knowledge import KnowledgeBase, default_knowledge_base
from medpclip.networks.prompts import NEGATIVE, PADDING, POSITIVE, mask_prompt

__all__ = ["WHOLE_IMAGE", "SampleRegionPromptsd", "RegionCaptionsd", "label_parts", "region_mask"]

WHOLE_IMAGE = "whole image"


class SampleRegionPromptsd(Randomizable, MapTransform):
    """Sample ``num_regions`` regions from the 2D label map ``d[label_key]`` (``[1, H, W]`` or ``[H, W]``).

    Each region is one label value present with at least ``min_area`` voxels (drawn without replacement while
    enough are present), or, with probability ``whole_image_prob``, the whole image. For each region it writes:

    * ``region_masks`` ``[R, H, W]`` float target masks (all ones for the whole image);
    * ``region_boxes`` ``[R, 4]`` ``(i0, j0, i1, j1)``: the mask's bounding box, enlarged on each side by up to
      ``box_jitter`` of its size, or cut into it by up to ``box_shrink`` (0: never, so it always bounds the mask;
      a propagated box, the previous slice's, need not bound this slice's structure), clipped to the image;
    * ``region_points`` ``[R, K, 2]`` / ``region_point_labels`` ``[R, K]``: 1..``max_positive`` clicks drawn from
      the mask's voxels, 0..``max_negative`` from outside it (preferably inside the box), padded with ``-1``;
    * ``region_names`` (the label names from ``d[names_key]``, or :data:`WHOLE_IMAGE`) and ``region_values``.

    ``d[parts_key]`` (optional, value -> values) makes a region's mask the union of its parts, e.g. the liver
    including the tumours inside it (see :func:`label_parts`).

    Where ``d[prior_key]`` holds the label map of a neighbouring slice (see ``SampleSliced(neighbours=...)``), each
    region is also prompted as slice propagation prompts it (:func:`~medpclip.networks.prompts.mask_prompt`):
    ``region_prior_masks`` ``[R, H, W]`` (the region on the neighbouring slice, or on this one where it is absent
    there), ``region_prior_points`` ``[R, 1, 2]`` (the prior's deepest voxel) and ``region_prior_boxes`` ``[R, 4]``
    (its tight box).
    """

    def __init__(
        self,
        label_key: str = "label",
        names_key: str = "label_names",
        parts_key: str = "label_parts",
        prior_key: str = "label_neighbour",
        num_regions: int = 4,
        max_positive: int = 2,
        max_negative: int = 1,
        box_jitter: float = 0.1,
        box_shrink: float = 0.0,
        min_area: int = 4,
        whole_image_prob: float = 0.0,
    ) -> None:
        MapTransform.__init__(self, [label_key])
        if num_regions < 1 or max_positive < 1 or max_negative < 0:
            raise ValueError("need num_regions >= 1, max_positive >= 1 and max_negative >= 0.")
        if not 0 <= whole_image_prob <= 1 or box_jitter < 0 or not 0 <= box_shrink < 0.5:
            raise ValueError("need 0 <= whole_image_prob <= 1, box_jitter >= 0 and 0 <= box_shrink < 0.5.")
        self.label_key, self.names_key, self.parts_key = label_key, names_key, parts_key
        self.prior_key = prior_key
        self.num_regions, self.max_positive, self.max_negative = num_regions, max_positive, max_negative
        self.box_jitter, self.box_shrink = box_jitter, box_shrink
        self.min_area, self.whole_image_prob = min_area, whole_image_prob

    def randomize(self, data: object = None) -> None:  # randomness is drawn per region in __call__
        pass

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        labels = _label_map(d[self.label_key])
        names = {int(k): v for k, v in (d.get(self.names_key) or {}).items()}
        parts = {int(k): [int(p) for p in v] for k, v in (d.get(self.parts_key) or {}).items()}
        values, counts = np.unique(labels[labels > 0], return_counts=True)
        present = [int(v) for v, c in zip(values, counts, strict=True) if c >= self.min_area]
        chosen = self._choose(present)
        k = self.max_positive + self.max_negative
        masks = np.zeros((len(chosen), *labels.shape), np.float32)
        boxes = np.zeros((len(chosen), 4), np.float32)
        points = np.zeros((len(chosen), k, 2), np.float32)
        point_labels = np.full((len(chosen), k), PADDING, np.int64)
        for r, value in enumerate(chosen):
            mask = region_mask(labels, value, parts)
            masks[r] = mask
            inside = np.argwhere(mask)  # [V, 2] row-major, shared by the box and the clicks
            boxes[r] = self._box(inside, mask.shape)
            if value != 0:
                points[r], point_labels[r] = self._clicks(mask, inside, boxes[r], k)
        missing = [v for v in chosen if v and v not in names]
        if missing:
            raise ValueError(f"label values {sorted(set(missing))} have no name in '{self.names_key}'.")
        d.update(
            region_masks=torch.from_numpy(masks),
            region_boxes=torch.from_numpy(boxes),
            region_points=torch.from_numpy(points),
            region_point_labels=torch.from_numpy(point_labels),
            region_names=[names[v] if v else WHOLE_IMAGE for v in chosen],
            region_values=torch.tensor(chosen, dtype=torch.long),
        )
        if self.prior_key in d:
            d.update(self._priors(_label_map(d[self.prior_key]), chosen, parts, masks > 0.5))
        return d

    @staticmethod
    def _priors(neighbour: np.ndarray, chosen: list[int], parts: dict, masks: np.ndarray) -> dict[str, torch.Tensor]:
        priors = np.zeros_like(masks, np.float32)
        points = np.zeros((len(chosen), 1, 2), np.float32)
        boxes = np.zeros((len(chosen), 4), np.float32)
        for r, value in enumerate(chosen):
            prior = region_mask(neighbour, value, parts)
            prior = prior if prior.any() else masks[r]
            priors[r] = prior
            points[r, 0], boxes[r] = mask_prompt(prior)
        return {
            "region_prior_masks": torch.from_numpy(priors),
            "region_prior_points": torch.from_numpy(points),
            "region_prior_boxes": torch.from_numpy(boxes),
        }

    def _choose(self, present: list[int]) -> list[int]:
        chosen = []
        pool = list(present)
        for _ in range(self.num_regions):
            if not present or self.R.rand() < self.whole_image_prob:
                chosen.append(0)
                continue
            if not pool:  # fewer labels than regions: draw again from all present labels
                pool = list(present)
            chosen.append(pool.pop(self.R.randint(len(pool))))
        return chosen

    def _box(self, inside: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        (i0, j0), (i1, j1) = inside.min(0), inside.max(0)
        grow = self.R.uniform(-self.box_shrink, self.box_jitter, 4) * np.array([i1 - i0 + 1, j1 - j0 + 1] * 2)
        h, w = shape
        lo = np.clip([i0 - grow[0], j0 - grow[1]], 0, [h - 1, w - 1])
        hi = np.clip([i1 + grow[2], j1 + grow[3]], 0, [h - 1, w - 1])
        middle = (lo + hi) / 2  # a box cut from both sides of a thin mask must not turn inside out
        return np.concatenate([np.minimum(lo, middle), np.maximum(hi, middle)]).astype(np.float32)

    def _clicks(self, mask: np.ndarray, inside: np.ndarray, box: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        points = np.zeros((k, 2), np.float32)
        labels = np.full(k, PADDING, np.int64)
        n_pos = self.R.randint(1, self.max_positive + 1)
        points[:n_pos] = inside[self.R.randint(len(inside), size=n_pos)]
        labels[:n_pos] = POSITIVE
        n_neg = self.R.randint(0, self.max_negative + 1)
        if n_neg:
            i0, j0, i1, j1 = np.round(box).astype(int)
            outside = np.argwhere(~mask[i0 : i1 + 1, j0 : j1 + 1]) + (i0, j0)  # background inside the box
            if len(outside) == 0:
                outside = np.argwhere(~mask)
            if len(outside):
                points[n_pos : n_pos + n_neg] = outside[self.R.randint(len(outside), size=n_neg)]
                labels[n_pos : n_pos + n_neg] = NEGATIVE
        return points, labels


def _label_map(labels: object) -> np.ndarray:
    """``[1, H, W]`` or ``[H, W]`` labels -> ``[H, W]`` int64."""
    labels = np.asarray(labels).astype(np.int64)
    labels = labels[0] if labels.ndim == 3 else labels
    if labels.ndim != 2:
        raise ValueError(f"region sampling needs a 2D label map, got shape {list(labels.shape)}.")
    return labels


def region_mask(labels: np.ndarray, value: int, parts: dict[int, list[int]]) -> np.ndarray:
    """The bool mask of label ``value`` and its parts (0: the whole image)."""
    if value == 0:
        return np.ones_like(labels, bool)
    members = parts.get(value, [value])
    return labels == members[0] if len(members) == 1 else np.isin(labels, members)  # isin is many times slower


def label_parts(
    names: Mapping[int | str, str], knowledge: KnowledgeBase, source: str | None = None
) -> dict[int, list[int]]:
    """For each label value, the values whose knowledge-base entry is it or lies under it (value -> values).

    LiTS: ``{1: [1, 2], 2: [2]}``, because the liver tumour is part of the liver.
    """
    entries = {int(v): knowledge.lookup(n, source) for v, n in names.items()}
    parts = {}
    for value, entry in entries.items():
        if entry is None:
            parts[value] = [value]
            continue
        parts[value] = [
            other
            for other, e in entries.items()
            if e is not None and (e.id == entry.id or entry.id in knowledge.ancestors(e.id))
        ]
    return parts


class RegionCaptionsd(Randomizable, MapTransform):
    """Captions for ``d["region_names"]`` from the knowledge base: ``region_texts`` and ``region_entry_ids``.

    Label names are mapped with ``d[source_key]`` (e.g. ``"aal3"``); whole-image regions are described by the
    image's modality. Unknown names are an error (validate datalists first to see them all at once).
    """

    def __init__(
        self,
        knowledge: KnowledgeBase | None = None,
        source_key: str = "label_source",
        modality_key: str = "modality",
    ) -> None:
        MapTransform.__init__(self, ["region_names"])
        self.knowledge = knowledge or default_knowledge_base()
        self.source_key, self.modality_key = source_key, modality_key

    def randomize(self, data: object = None) -> None:
        pass

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        modality = d.get(self.modality_key)
        source = d.get(self.source_key)
        texts, ids = [], []
        for name in d["region_names"]:
            term = modality if name == WHOLE_IMAGE else name
            entry = self.knowledge.lookup(term, None if name == WHOLE_IMAGE else source) if term else None
            if entry is None:
                raise ValueError(f"region {name!r} (source {source!r}) is not in the knowledge base.")
            seed = int(self.R.randint(2**31))
            if name == WHOLE_IMAGE:
                texts.append(self.knowledge.captions(entry.id, n=1, seed=seed)[0])
            else:
                modality_text = _modality_text(modality)
                texts.append(self.knowledge.captions(entry.id, modality=modality_text, n=1, seed=seed)[0])
            ids.append(entry.id)
        d["region_texts"], d["region_entry_ids"] = texts, ids
        return d


def _modality_text(modality: str | None) -> str | None:
    """Readable modality for captions: ``"MR T1"`` stays, DICOM codes become families (``"CR"`` -> ``"X-ray"``)."""
    if not modality:
        return None
    family = modality_family(modality)
    return {"XR": "X-ray", "US": "ultrasound", "other": modality}.get(family, modality if " " in modality else family)
