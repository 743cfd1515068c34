"""A fixed held-out evaluation: the same samples at every call, so figures are comparable across iterations."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medpclip.data.datalists import DatalistError, load_datalist
from medpclip.data.dataset import (
    ImageSliceDataset,
    RegionBatch,
    RegionSliceDataset,
    collate_regions,
    image_augmentation,
)
from medpclip.data.intensity import MODALITY_CLASSES, modality_family
from medpclip.engines.metrics import image_zero_shot, interactive_dice, region_metrics
from medpclip.knowledge import KnowledgeBase, default_knowledge_base
from medpclip.networks.model import MedPCLIP

__all__ = ["RegionEvalSet", "Validator", "MODALITY_CLASSES", "training_slices"]


@dataclass
class RegionEvalSet:
    """Held-out region samples of one label datalist, their classes and the structure used for click Dice."""

    name: str  # prefix of the metrics: the datalist's ``name``, else its ``label_source``, else its file stem
    batches: list[RegionBatch]
    class_ids: list[str]
    modality: str | None
    dice_entry: str | None = None


@dataclass
class Validator:
    """Region metrics per label datalist, Dice after 1/3/5 clicks, image-level modality zero-shot (also on
    ``modality_views``, augmented copies of the modality images, and on ``modality_draws``, other slices and frames
    of the same files, when built with some). Regions are named as ``naming_prompt`` prompts them (``mask`` or
    ``click``, :data:`~medpclip.engines.metrics.NAMING_PROMPTS`), each from ``naming_views`` views of its slice
    (:func:`~medpclip.inference.views.region_embeddings`)."""

    region_sets: list[RegionEvalSet] = field(default_factory=list)
    modality_images: torch.Tensor | None = None
    modality_labels: list[str] = field(default_factory=list)
    modality_names: list[str] = field(default_factory=list)
    modality_classes: list[str] = field(default_factory=list)
    modality_views: torch.Tensor | None = None  # [V * N, 1, S, S]: V augmented copies of the N modality images
    modality_draws: torch.Tensor | None = None  # [K * N, 1, S, S]: K draws of each item, the first the images above
    knowledge: KnowledgeBase = field(default_factory=default_knowledge_base)
    naming_prompt: str = "mask"
    naming_views: int = 1

    @property
    def has_data(self) -> bool:
        return bool(self.region_sets) or self.modality_images is not None

    @classmethod
    def from_datalists(
        cls,
        label_datalists: Sequence[str],
        modality_datalist: str | None,
        *,
        samples: int = 48,
        seed: int = 0,
        displace: bool = False,
        image_size: int = 128,
        split: str = "validation",
        modality_views: int = 0,
        modality_draws: int = 0,
        naming_prompt: str = "mask",
        naming_views: int = 1,
    ) -> Validator:
        """Samples of each datalist's ``split`` (held-out ``validation``, or ``training`` to see what the model
        learnt of the slices it trained on); ``displace`` moves them inside the frame. Registered samples carry the
        nearest-training-slice baseline of the datalist's ``training`` slabs (1.0 on the training split).
        ``modality_views`` augmented copies of each modality image (:func:`image_augmentation` at chance 0.5, as
        training draws them) give a second modality figure over many more images than the few held-out files, and
        tell whether naming the modality hangs on how an image is framed, oriented or windowed. ``modality_draws``
        draws of each modality item (seeds ``seed``, ``seed + 1``, ...: another slice of a volume slab, another frame
        of a multi-frame file, the same image of a single-frame file) give a figure that does not hang on which
        slice or frame one seed happens to draw (the shipped weights name 16 or 17 of the 18 images of one draw)."""
        knowledge = default_knowledge_base()
        sets = []
        for path in label_datalists:
            items = load_datalist(path, split)
            per_item = math.ceil(samples / len(items))
            dataset = RegionSliceDataset(
                items,
                image_size=image_size,
                num_regions=8,
                samples_per_item=per_item,
                displace=displace,
                reference_slices=training_slices(path),
            )
            dataset.set_random_state(seed)
            picked = [dataset[i] for i in range(0, len(dataset), max(len(dataset) // samples, 1))][:samples]
            batches = [collate_regions(picked[i : i + 16]) for i in range(0, len(picked), 16)]
            mapping = knowledge.map_labels(items[0]["labels"].values(), items[0].get("label_source"))
            class_ids = list(dict.fromkeys(mapping.mapped.values()))
            liver = knowledge.lookup("liver").id
            source = items[0].get("name") or items[0].get("label_source") or Path(path).stem
            sets.append(
                RegionEvalSet(
                    source, batches, class_ids, items[0].get("modality"), liver if liver in class_ids else None
                )
            )
        validator = cls(region_sets=sets, knowledge=knowledge, naming_prompt=naming_prompt, naming_views=naming_views)
        if modality_datalist:
            items = load_datalist(modality_datalist, split)
            # every file cached by the readability pass, so drawing the samples reads none of them again
            dataset = ImageSliceDataset(items, image_size=image_size, cache_size=len(items)).set_random_state(seed)
            readable = dataset.readable_indices("modality images")
            dataset.set_random_state(seed)  # the same draws whether or not a file was skipped before
            draws = [[dataset[i] for i in readable]]
            for extra in range(1, modality_draws):
                dataset.set_random_state(seed + extra)
                draws.append([dataset[i] for i in readable])
            samples_ = draws[0]
            families = [modality_family(s["modality"]) for s in samples_]
            validator.modality_classes = [knowledge.lookup(n).id for n in MODALITY_CLASSES.values()]
            keep = [i for i, f in enumerate(families) if f in MODALITY_CLASSES]
            validator.modality_images = torch.stack([samples_[i]["image"] for i in keep])
            if modality_draws:
                validator.modality_draws = torch.stack([draw[i]["image"] for draw in draws for i in keep])
            validator.modality_labels = [knowledge.lookup(MODALITY_CLASSES[families[i]]).id for i in keep]
            validator.modality_names = [Path(samples_[i]["source"]).name for i in keep]
            if modality_views:
                augment = image_augmentation(image_size, 0.5).set_random_state(seed)
                views = [augment(image) for _ in range(modality_views) for image in validator.modality_images]
                validator.modality_views = torch.stack(views)
        return validator

    @torch.no_grad()
    def __call__(self, model: MedPCLIP) -> dict[str, object]:
        """All metrics as one flat dict (``<set>/<metric>``)."""
        out: dict[str, object] = {}
        for s in self.region_sets:
            metrics = region_metrics(
                model,
                s.batches,
                self.knowledge,
                s.class_ids,
                modality=s.modality,
                prompt=self.naming_prompt,
                views=self.naming_views,
            )
            out.update({f"{s.name}/{k}": v for k, v in metrics.items()})
            if s.dice_entry is not None:
                images, targets = _structure(s.batches, s.dice_entry)
                if len(images):
                    for clicks, dice in interactive_dice(model, images, targets).items():
                        out[f"{s.name}/dice_{clicks}_clicks"] = dice
        if self.modality_images is not None:
            metrics = image_zero_shot(
                model,
                self.modality_images,
                self.modality_labels,
                self.knowledge,
                self.modality_classes,
                self.modality_names,
            )
            out.update({f"modality/{k}": v for k, v in metrics.items()})
        if self.modality_views is not None:
            labels = self.modality_labels * (len(self.modality_views) // len(self.modality_labels))
            metrics = image_zero_shot(model, self.modality_views, labels, self.knowledge, self.modality_classes)
            out["modality/augmented_accuracy"], out["modality/augmented_images"] = metrics["accuracy"], len(labels)
        if self.modality_draws is not None:
            times = len(self.modality_draws) // len(self.modality_labels)
            metrics = image_zero_shot(
                model,
                self.modality_draws,
                self.modality_labels * times,
                self.knowledge,
                self.modality_classes,
                self.modality_names * times,
            )
            out["modality/draws_accuracy"], out["modality/draws_images"] = metrics["accuracy"], metrics["images"]
            shown = Counter(self.modality_names * times)  # the slabs of one volume share its file name
            out["modality/draws_misses"] = [
                f"{miss} ({n} of {shown[miss.split(': ')[0]]})" for miss, n in Counter(metrics["misses"]).items()
            ]
        return out


def training_slices(datalist: str | Path) -> dict[tuple[str, int], list[int]]:
    """``(label file, axis) -> slice indices`` of the volume items (with ``axis`` and ``slices``) of a datalist's
    ``training`` split; empty when it has none (a validation-only datalist)."""
    try:
        items = load_datalist(datalist, "training", check_shapes=False)
    except DatalistError:
        return {}
    out: dict[tuple[str, int], list[int]] = {}
    for item in items:
        if "label" in item and "axis" in item and "slices" in item:
            out.setdefault((item["label"], int(item["axis"])), []).extend(range(*item["slices"]))
    return out


def _structure(batches: list[RegionBatch], entry_id: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, 1, S, S]`` and masks ``[N, 1, S, S]`` of the first region of class ``entry_id`` per sample."""
    images, masks = [], []
    for batch in batches:
        for b, ids in enumerate(batch.entry_ids):
            if entry_id in ids:
                images.append(batch.images[b])
                masks.append(batch.masks[b, ids.index(entry_id)][None] > 0.5)
    if not images:
        return torch.zeros(0), torch.zeros(0)
    return torch.stack(images), torch.stack(masks)
