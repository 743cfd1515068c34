"""One training iteration of MedP-CLIP: region–text and image–text contrast plus interactive mask training."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from medpclip.data.dataset import PROMPT_FORMS, PROPAGATED, RegionBatch
from medpclip.data.intensity import MODALITY_CLASSES, modality_family
from medpclip.engines.interaction import add_clicks, center_clicks, next_clicks
from medpclip.knowledge import KnowledgeBase, default_knowledge_base
from medpclip.losses import class_loss, contrastive_loss, location_loss, mask_loss
from medpclip.networks.model import ImageEncoding, MedPCLIP
from medpclip.networks.prompts import PRIOR_LOGIT, RegionPrompts
from medpclip.networks.vit import ImageStream

__all__ = ["CENTER", "RegionTrainStep", "TrainingObjective"]

CENTER = "center"  # the annotator's prompt form of center_click: one click at each region's centre


class RegionTrainStep:
    """``iteration_update`` for MONAI's ``SupervisedTrainer``: ``(engine, batch) -> {"loss": float, ...}``.

    Per step: one prompt form (with chance ``propagation`` the ``propagated`` form of slice propagation: a click
    inside a neighbouring slice's mask, its box and the mask as the decoder's prior logits; else, with chance
    ``center_click``, the annotator's form: one click at each region's centre, the voxel farthest from its border,
    with every correction click at the centre of the largest error, as :func:`interactive_dice` evaluates; else
    drawn from ``forms``); region–text InfoNCE over every region of the batch against
    its caption plus ``hard_negatives`` knowledge-base hard-negative captions per region; region classification
    over the whole ``vocabulary`` of region classes, one caption per class (``vocabulary_weight``); image-level
    classification of the global embeddings over the modality families (``global_weight``), on the batch's images
    and on one batch ``(images [N, 1, S, S], modalities, originals [N, 1, S, S])`` drawn from ``modality_images`` when
    given (``originals``: the images before augmentation, which the ``teacher`` of distillation sees); for non-mask
    prompts, the mask loss over 1..``click_rounds`` rounds of simulated correction clicks, each round re-using the
    cached prefix and feeding the previous logits back (``mask_weight``), on ``mask_regions`` of each slice's
    regions drawn afresh every step (``None``: all; the naming terms always use all of them); with
    ``location_weight``, the model's ``location_head`` says from each region embedding where in its volume the region
    lies (the batch's ``locations``, an L1 loss); with chance ``mask_naming`` a step that is not prompted by masks
    also names every region prompted by its mask (``region_text_mask``, ``region_class_mask``: one more region pass
    over the cached image pass), the form evaluation and a segmented region are named from.
    """

    def __init__(
        self,
        *,
        knowledge: KnowledgeBase | None = None,
        forms: tuple[str, ...] = PROMPT_FORMS,
        hard_negatives: int = 2,
        click_rounds: int = 3,
        mask_weight: float = 1.0,
        mask_regions: int | None = None,
        global_weight: float = 0.5,
        vocabulary: Sequence[str] = (),
        vocabulary_weight: float = 1.0,
        modality_images: Iterator[tuple[torch.Tensor, list[str], torch.Tensor]] | None = None,
        propagation: float = 0.0,
        center_click: float = 0.0,
        mask_naming: float = 0.0,
        teacher: MedPCLIP | None = None,
        distill_weight: float = 0.0,
        location_weight: float = 0.0,
        seed: int = 0,
    ) -> None:
        unknown = set(forms) - set(PROMPT_FORMS)
        if unknown or not forms:
            raise ValueError(f"forms should be a non-empty subset of {PROMPT_FORMS}, got {forms}.")
        chances = {"propagation": propagation, "center_click": center_click, "mask_naming": mask_naming}
        for name, chance in chances.items():
            if not 0 <= chance <= 1:
                raise ValueError(f"{name} should be a probability in [0, 1], got {chance}.")
        self.propagation, self.center_click, self.mask_naming = propagation, center_click, mask_naming
        self.knowledge = knowledge or default_knowledge_base()
        self.forms, self.hard_negatives, self.click_rounds = tuple(forms), hard_negatives, click_rounds
        if mask_regions is not None and mask_regions < 1:
            raise ValueError(f"mask_regions should be a positive number of regions or None, got {mask_regions}.")
        self.mask_weight, self.mask_regions, self.global_weight = mask_weight, mask_regions, global_weight
        self.vocabulary, self.vocabulary_weight = list(vocabulary), vocabulary_weight
        self.modality_images = modality_images
        if distill_weight and (teacher is None or modality_images is None):
            raise ValueError("distill_weight needs a teacher model and modality_images to hold to it.")
        if teacher is not None:  # frozen once here, not at every step
            teacher.eval().requires_grad_(False)
        self.teacher, self.distill_weight = teacher, distill_weight
        if location_weight < 0:
            raise ValueError(f"location_weight should be >= 0, got {location_weight}.")
        self.location_weight = location_weight
        self.modality_classes = [self.knowledge.lookup(name).id for name in MODALITY_CLASSES.values()]
        self.rng = np.random.default_rng(seed)

    def __call__(self, engine: object, batch: RegionBatch) -> dict[str, float]:
        network = engine.network
        network.train()
        batch = batch.to(engine.state.device)
        # under DDP the losses must come from the wrapper's forward so that gradients are averaged across ranks
        losses = network(batch) if isinstance(network, DistributedDataParallel) else self.losses(network, batch)
        total = sum(losses.values())
        engine.optimizer.zero_grad(set_to_none=True)
        total.backward()
        engine.optimizer.step()
        return {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in losses.items()}}

    def losses(self, model: MedPCLIP, batch: RegionBatch) -> dict[str, torch.Tensor]:
        """The weighted loss terms of one batch (``region_text``, ``region_class``, ``image_class``,
        ``image_distill``, ``region_location``, ``mask``)."""
        # a chance that is off draws nothing, so recipes without it keep their random stream
        if self.propagation and self.rng.random() < self.propagation:
            form = PROPAGATED
        elif self.center_click and self.rng.random() < self.center_click:
            form = CENTER
        else:
            form = self.forms[self.rng.integers(len(self.forms))]
        prompts = center_clicks(batch.masks) if form == CENTER else batch.prompts(form)
        prefix = model.encode_prefix(batch.images)
        enc = model.encode_image(batch.images, prompts, prefix=prefix)
        region_embeds = enc.region_embeds.flatten(0, 1)
        out = self._naming(model, region_embeds, batch)
        if form != "mask" and self.mask_naming and self.rng.random() < self.mask_naming:
            named = model.encode_image(batch.images, RegionPrompts(masks=batch.masks), prefix=prefix)
            out |= {f"{k}_mask": v for k, v in self._naming(model, named.region_embeds.flatten(0, 1), batch).items()}
        if self.location_weight:
            if model.location_head is None or batch.locations is None:
                raise ValueError("location_weight needs a model with a location_head and batches with locations.")
            predicted = model.location_head(region_embeds)
            out["region_location"] = self.location_weight * location_loss(predicted, batch.locations.flatten(0, 1))
        if self.global_weight:
            global_embeds, modalities = enc.global_embeds, batch.modalities
            if self.modality_images is not None:
                images, extra, originals = next(self.modality_images)
                extra_embeds = model.encode_image(images.to(global_embeds.device)).global_embeds
                if self.distill_weight:
                    out["image_distill"] = self.distill_weight * self._distill(originals, extra_embeds)
                global_embeds, modalities = torch.cat([global_embeds, extra_embeds]), [*modalities, *extra]
            out["image_class"] = self.global_weight * self._image_class(model, global_embeds, modalities)
        if self.mask_weight and form != "mask":  # a mask prompt would let the decoder copy its input
            prior = (batch.prior_masks * 2 - 1) * PRIOR_LOGIT if form == PROPAGATED else None
            masks, p = batch.masks, batch.masks.shape[1]
            if self.mask_regions is not None and self.mask_regions < p:
                # decoding and correction rounds cost per prompt: a random few of the regions carry the mask loss
                keep = torch.from_numpy(self.rng.permutation(p)[: self.mask_regions]).to(masks.device)
                prompts, masks, enc = prompts.take(keep), masks[:, keep], enc.take(keep)
                prior = None if prior is None else prior[:, keep]
            mode = "center" if form == CENTER else "random"
            mask = self._interactive_mask(model, batch.images, masks, prompts, prefix, enc, prior, mode)
            out["mask"] = self.mask_weight * mask
        return out

    def _naming(self, model: MedPCLIP, region_embeds: torch.Tensor, batch: RegionBatch) -> dict[str, torch.Tensor]:
        """Naming terms of ``region_embeds [B * P, E]``: ``region_text`` and, with a vocabulary, ``region_class``."""
        out = {"region_text": self._region_text(model, region_embeds, batch)}
        if self.vocabulary and self.vocabulary_weight:
            out["region_class"] = self.vocabulary_weight * self._region_class(model, region_embeds, batch)
        return out

    def _region_text(self, model: MedPCLIP, region_embeds: torch.Tensor, batch: RegionBatch) -> torch.Tensor:
        visible = batch.laterality_visible or [True] * len(batch.entry_ids)
        rows = [(e, m, v) for ids, m, v in zip(batch.entry_ids, batch.modalities, visible, strict=True) for e in ids]
        texts = [t for ts in batch.texts for t in ts]
        # on a sagittal slice a structure and its contralateral twin look the same: neither is the other's negative
        classes = [e if v else self._side_free(e) for e, _, v in rows]
        for entry_id, modality, lateral_ok in rows:
            candidates = self.knowledge.hard_negatives(entry_id, limit=4)
            if not lateral_ok:
                candidates = [c for c in candidates if c != self.knowledge.contralateral(entry_id)]
            for negative in self.rng.permutation(candidates)[: self.hard_negatives] if candidates else []:
                seed = int(self.rng.integers(2**31))
                texts.append(self.knowledge.captions(str(negative), modality=modality, seed=seed)[0])
                classes.append(str(negative))
        return contrastive_loss(region_embeds, model.encode_text(texts), classes, model.logit_scale)

    def _side_free(self, entry_id: str) -> str:
        """One class key shared by a lateral structure and its contralateral twin."""
        twin = self.knowledge.contralateral(entry_id)
        return min(entry_id, twin) if twin else entry_id

    def _region_class(self, model: MedPCLIP, region_embeds: torch.Tensor, batch: RegionBatch) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.vocabulary)}
        visible = batch.laterality_visible or [True] * len(batch.entry_ids)
        flat = [(e, v) for ids, v in zip(batch.entry_ids, visible, strict=True) for e in ids]
        rows = [(r, e, v) for r, (e, v) in enumerate(flat) if e in index]  # whole-image regions: modality captions
        if not rows:
            return region_embeds.sum() * 0
        not_negative = torch.zeros(len(rows), len(index), dtype=torch.bool, device=region_embeds.device)
        for k, (_, entry_id, lateral_ok) in enumerate(rows):
            twin = self.knowledge.contralateral(entry_id)
            if not lateral_ok and twin in index:
                not_negative[k, index[twin]] = True
        texts = [self.knowledge.captions(c, seed=int(self.rng.integers(2**31)))[0] for c in self.vocabulary]
        targets = torch.tensor([index[e] for _, e, _ in rows], device=region_embeds.device)
        embeds = region_embeds[[r for r, _, _ in rows]]
        return class_loss(embeds, model.encode_text(texts), targets, model.logit_scale, not_negative)

    def _image_class(self, model: MedPCLIP, global_embeds: torch.Tensor, modalities: list[str | None]) -> torch.Tensor:
        """Global embeddings ``[N, E]`` classified over modality families."""
        index = {c: i for i, c in enumerate(self.modality_classes)}
        entries = [self.knowledge.lookup(MODALITY_CLASSES.get(modality_family(m), "")) for m in modalities]
        keep = [i for i, e in enumerate(entries) if e is not None and e.id in index]
        if not keep:
            return global_embeds.sum() * 0
        texts = [self.knowledge.captions(c, seed=int(self.rng.integers(2**31)))[0] for c in self.modality_classes]
        targets = torch.tensor([index[entries[i].id] for i in keep], device=global_embeds.device)
        return class_loss(global_embeds[keep], model.encode_text(texts), targets, model.logit_scale)

    def _distill(self, originals: torch.Tensor, global_embeds: torch.Tensor) -> torch.Tensor:
        """Mean cosine distance of ``global_embeds [N, E]`` to the teacher's of ``originals [N, 1, S, S]``, the images
        before augmentation: the teacher has not learnt augmented views (the shipped checkpoint names 0.73 of
        augmented held-out modality images against 0.94 of them as they are), so the student is held to what it
        says of each image as it is, which also asks the student to see through the augmentation."""
        with torch.no_grad():
            target = self.teacher.encode_image(originals.to(global_embeds.device)).global_embeds
        return (1 - F.cosine_similarity(global_embeds, target, dim=-1)).mean()

    def _interactive_mask(
        self,
        model: MedPCLIP,
        images: torch.Tensor,
        masks: torch.Tensor,
        prompts: RegionPrompts,
        prefix: ImageStream,
        enc: ImageEncoding,
        prior: torch.Tensor | None = None,
        mode: str = "random",
    ) -> torch.Tensor:
        """Mask loss of ``prompts`` against ``masks [B, P, S, S]`` over 1..``click_rounds`` rounds of correction clicks
        (:func:`next_clicks` ``mode``); ``prior [B, P, S, S]`` logits feed the first decode."""
        rounds = int(self.rng.integers(1, self.click_rounds + 1))
        logits = model.decode_masks(enc, prev_mask_logits=prior)
        total = mask_loss(logits, masks)
        b, p = masks.shape[:2]
        for _ in range(rounds - 1):
            with torch.no_grad():
                pred = F.interpolate(logits.detach(), size=masks.shape[-2:], mode="bilinear") > 0
                points, labels = next_clicks(pred.flatten(0, 1), masks.flatten(0, 1) > 0.5, mode, self.rng)
            prompts = add_clicks(prompts, points.view(b, p, 2), labels.view(b, p))
            enc = model.encode_image(images, prompts, prefix=prefix)
            logits = model.decode_masks(enc, prev_mask_logits=logits.detach())
            total = total + mask_loss(logits, masks)
        return total / rounds


class TrainingObjective(nn.Module):
    """``forward(batch) -> loss terms`` of :class:`RegionTrainStep`, as a module to wrap in
    ``DistributedDataParallel`` (the model's own ``forward`` is not the whole training computation)."""

    def __init__(self, model: MedPCLIP, step: RegionTrainStep) -> None:
        super().__init__()
        self.model = model
        self.step = step

    def forward(self, batch: RegionBatch) -> dict[str, torch.Tensor]:
        return self.step.losses(self.model, batch)
