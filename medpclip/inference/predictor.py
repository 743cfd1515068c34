"""Interactive prediction on one 2D slice: the prompt-free image pass is computed once per slice, so every
further click only runs the prompt encoder, the region tokens and the mask decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medpclip.inference.geometry import SquareFit
from medpclip.inference.views import NAMING_VIEWS, region_embeddings
from medpclip.knowledge import KnowledgeBase, default_knowledge_base
from medpclip.networks.model import ImageEncoding, MedPCLIP
from medpclip.networks.prompts import NEGATIVE, POSITIVE, RegionPrompts

__all__ = ["SlicePredictor"]


class SlicePredictor:
    """Holds one slice and its cached prefix; prompts are voxel indices ``(i, j)`` of that slice. A prompted region
    is named from ``naming_views`` slightly moved views of the slice (:func:`region_embeddings`; 1: the slice alone).

    Example::

        predictor = SlicePredictor(model)
        predictor.set_image(slice_)                      # [1, H, W] in [0, 1]
        logits = predictor.segment(points=[(40, 52)])    # [H, W]; > 0 is the structure
        logits = predictor.segment(points=[(40, 52)], negatives=[(60, 60)], prev_logits=logits)
        ranking = predictor.classify(["liver", "spleen"], points=[(40, 52)])
    """

    def __init__(
        self,
        model: MedPCLIP,
        knowledge: KnowledgeBase | None = None,
        modality: str | None = None,
        naming_views: int = NAMING_VIEWS,
    ) -> None:
        if naming_views < 1:
            raise ValueError(f"naming_views should be at least 1, got {naming_views}.")
        self.model = model.eval()
        self.naming_views = naming_views
        self.knowledge = knowledge or default_knowledge_base()
        self.modality = modality
        self.fit: SquareFit | None = None
        self._input = self._prefix = None
        self._text: dict[str, torch.Tensor] = {}

    @torch.inference_mode()
    def set_image(self, slice_: torch.Tensor) -> None:
        """``[1, H, W]`` intensities in ``[0, 1]``: resize into the model input and cache the prefix."""
        if slice_.ndim != 3 or slice_.shape[0] != 1 or min(slice_.shape[1:]) < 1:
            raise ValueError(f"slice should have shape [1, H, W], got {list(slice_.shape)}.")
        if torch.as_tensor(slice_).is_complex():
            raise ValueError("slice has complex values; give real intensities (e.g. the magnitude).")
        self.fit = SquareFit(int(slice_.shape[1]), int(slice_.shape[2]), self.model.image_size)
        self._input = self.fit.image(torch.as_tensor(slice_))[None]
        self._prefix = self.model.encode_prefix(self._input)

    def prompts(
        self,
        points: Sequence[Sequence[float]] = (),
        negatives: Sequence[Sequence[float]] = (),
        box: Sequence[float] | None = None,
        mask: torch.Tensor | None = None,
    ) -> RegionPrompts | None:
        """Validate slice-space prompts (clear ``ValueError`` naming the problem) and map them into the model input;
        ``None`` when nothing is given (the whole image)."""
        fit = self._require_image()
        clicks = [*points, *negatives]
        if any(not hasattr(click, "__len__") or len(click) != 2 for click in clicks):
            raise ValueError(f"a click on a slice needs 2 coordinates (i, j): got {clicks}.")
        given = RegionPrompts(
            points=torch.tensor([[clicks]], dtype=torch.float32).view(1, 1, -1, 2) if clicks else None,
            point_labels=torch.tensor([[[POSITIVE] * len(points) + [NEGATIVE] * len(negatives)]]) if clicks else None,
            boxes=torch.tensor([[box]], dtype=torch.float32) if box is not None else None,
            masks=torch.as_tensor(mask, dtype=torch.float32)[None, None] if mask is not None else None,
        )
        if given.is_empty:
            return None
        given.validate(1, (fit.height, fit.width))
        return RegionPrompts(
            points=fit.points(given.points) if clicks else None,
            point_labels=given.point_labels,
            boxes=fit.points(given.boxes.view(1, 1, 2, 2)).view(1, 1, 4) if box is not None else None,
            masks=fit.image(given.masks[0], mode="nearest")[None] if mask is not None else None,
        )

    @torch.inference_mode()
    def encode(self, prompts: RegionPrompts | None) -> ImageEncoding:
        self._require_image()
        return self.model.encode_image(self._input, prompts, prefix=self._prefix)

    @torch.inference_mode()
    def segment(self, *, prev_logits: torch.Tensor | None = None, **prompt_args: object) -> torch.Tensor:
        """Mask logits ``[H, W]`` over the slice; ``prev_logits`` (an earlier result) refines that prediction."""
        return self.decode(self.encode(self.prompts(**prompt_args)), prev_logits)

    @torch.inference_mode()
    def classify(self, labels: Sequence[str], **prompt_args: object) -> list[dict]:
        """Rank free-text ``labels`` for the prompted region (no prompt: the whole image), most probable first:
        ``[{"label": str, "probability": float}, ...]``. Known terms use the knowledge base's prompt ensemble.
        Without a prompt the global image embedding is ranked: the one trained, and evaluated, on image-level
        classification (the whole-image region names the region's content, and is weaker at modality)."""
        prompts = self.prompts(**prompt_args)
        if prompts is None:
            return self.rank_embedding(self.encode(None).global_embeds[0], labels)
        return self.rank_embedding(self.region_embeddings(prompts)[0, 0], labels)

    @torch.inference_mode()
    def decode(self, encoding: ImageEncoding, prev_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Mask logits ``[H, W]`` over the slice from an :meth:`encode` result (see :meth:`segment`)."""
        fit = self._require_image()
        prev = None if prev_logits is None else fit.image(prev_logits[None].float(), mode="bilinear")[None]
        return fit.logits_back(self.model.decode_masks(encoding, prev_mask_logits=prev)[0, 0])

    @torch.inference_mode()
    def rank_embedding(self, embedding: torch.Tensor, labels: Sequence[str]) -> list[dict]:
        """Ranked ``labels`` for one region or image embedding ``[E]``."""
        labels = [str(label).strip() for label in labels]
        if not labels or not all(labels):
            raise ValueError("labels are empty: give at least one non-empty label.")
        for label in labels:
            try:
                label.encode("utf-8")
            except UnicodeEncodeError:  # e.g. undecodable bytes of a command line, kept as surrogates
                raise ValueError(f"label {label!r} is not valid Unicode text.") from None
        text = torch.stack([self._label_embedding(label) for label in labels])
        probs = self.model.similarity(embedding, text).softmax(-1)
        ranking = sorted(zip(labels, probs.tolist(), strict=True), key=lambda pair: -pair[1])
        return [{"label": label, "probability": round(p, 6)} for label, p in ranking]

    @torch.inference_mode()
    def retrieve(
        self, text: str, *, boxes: Sequence[Sequence[float]] = (), masks: Sequence[torch.Tensor] = ()
    ) -> list[dict]:
        """Which of many regions of the slice best matches ``text``: every box ``(i0, j0, i1, j1)`` or mask ``[H, W]``
        is one prompt, all encoded in one batched pass; returns ``[{"index", "probability"}, ...]`` best first
        (softmax over the regions)."""
        fit = self._require_image()
        if bool(boxes) == bool(masks):
            raise ValueError("give either boxes or masks (one region each), not both and not neither.")
        if boxes:
            given = RegionPrompts(boxes=torch.tensor([list(map(list, boxes))], dtype=torch.float32))
            given.validate(1, (fit.height, fit.width))
            prompts = RegionPrompts(boxes=fit.points(given.boxes.view(1, -1, 2, 2)).view(1, -1, 4))
        else:
            given = RegionPrompts(masks=torch.stack([torch.as_tensor(m, dtype=torch.float32) for m in masks])[None])
            given.validate(1, (fit.height, fit.width))
            prompts = RegionPrompts(masks=fit.image(given.masks[0], mode="nearest")[None])
        regions = self.region_embeddings(prompts)[0]  # [P, E]
        probs = self.model.similarity(regions, self._label_embedding(str(text).strip())[None])[:, 0].softmax(0)
        order = probs.argsort(descending=True).tolist()
        return [{"index": i, "probability": round(float(probs[i]), 6)} for i in order]

    @torch.inference_mode()
    def region_embeddings(self, prompts: RegionPrompts) -> torch.Tensor:
        """``[1, P, E]`` unit-length embeddings of the prompted regions, each named from ``naming_views`` views."""
        self._require_image()
        return region_embeddings(self.model, self._input, prompts, self.naming_views, prefix=self._prefix)

    def _label_embedding(self, label: str) -> torch.Tensor:
        if label not in self._text:
            entry = self.knowledge.lookup(label)
            texts = self.knowledge.prompt_ensemble(entry.id, self.modality) if entry else [label]
            embeds = F.normalize(self.model.encode_text(texts), dim=-1).mean(0)
            self._text[label] = F.normalize(embeds, dim=-1)
        return self._text[label]

    def _require_image(self) -> SquareFit:
        if self.fit is None:
            raise ValueError("no image: call set_image() first.")
        return self.fit
