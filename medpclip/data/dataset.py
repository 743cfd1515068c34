"""DataLoader-ready datasets of 2D samples drawn from datalists, and the region batch collate function.

Volumes are loaded and intensity-scaled once per process (a small cache keyed by file), then every sample draws a
slice inside the item's slab and resizes it to the model's square input; region samples also draw regions and
captions.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from monai.transforms import (
    Compose,
    CopyItemsd,
    EnsureType,
    Lambdad,
    LoadImaged,
    Rand2DElasticd,
    RandAdjustContrast,
    RandAffine,
    RandAffined,
    RandBiasField,
    RandFlip,
    RandGibbsNoise,
    Randomizable,
    RandRicianNoise,
    RandRotate90,
    RandSimulateLowResolution,
    RandZoom,
    Resized,
    ScaleIntensity,
    SpatialPadd,
)
from torch.utils.data import Dataset

from medpclip.data.intensity import ModalityIntensityd, grey
from medpclip.data.readers import with_palette_colour
from medpclip.data.regions import RegionCaptionsd, SampleRegionPromptsd, label_parts, region_mask
from medpclip.data.slicing import SampleSliced
from medpclip.knowledge import KnowledgeBase, default_knowledge_base
from medpclip.networks.prompts import RegionPrompts

__all__ = [
    "PROMPT_FORMS",
    "PROPAGATED",
    "ImageSliceDataset",
    "RegionBatch",
    "RegionSliceDataset",
    "collate_regions",
    "image_augmentation",
    "mr_augmentation",
    "region_locations",
]

PROMPT_FORMS = ("mask", "box", "points", "box+points")
PROPAGATED = "propagated"  # the prompt form of slice propagation (needs a dataset with prior_offset > 0)


def preprocess_transform(keys: list[str]) -> Compose:
    """Deterministic, cacheable per volume: load channel-first, make the image one grey channel, scale its
    intensity by modality (as :func:`medpclip.inference.load_image` does)."""
    return Compose(
        [
            with_palette_colour(LoadImaged(keys=keys, ensure_channel_first=True, image_only=True)),
            Lambdad(keys="image", func=grey),
            ModalityIntensityd(keys="image"),
        ]
    )


def slice_transforms(keys: list[str], image_size: int, neighbours: int = 0, tilt: float = 0.0) -> list:
    """Random per sample (or the item's ``axis``/``slice`` when it gives them): one slice inside the item's slab,
    resized (longest side; ``"image"`` by area, label maps by nearest neighbour) and padded to a square. With
    ``neighbours``, the second key (the label) also gives ``"<key>_neighbour"``; with ``tilt``, that share of the
    slices is cut on a tilted plane (:class:`~medpclip.data.slicing.SampleSliced`)."""
    extra = [f"{keys[1]}_neighbour"] if neighbours else []
    out = [*keys, *extra]
    modes = ["area" if key == "image" else "nearest" for key in out]
    return [
        SampleSliced(keys=keys, neighbours=neighbours, neighbour_keys=keys[1:2], tilt=tilt, interpolate=["image"]),
        Resized(keys=out, spatial_size=image_size, size_mode="longest", mode=modes),
        SpatialPadd(keys=out, spatial_size=(image_size, image_size)),
    ]


def tilt_bounds(items: Sequence[dict]) -> list[dict]:
    """Copies of ``items`` where each slab item (``axis`` and ``slices``) also gets ``tilt_bounds``: the run of
    touching slabs of the same image, label and axis that contains its slab, as far as a tilted plane through it may
    reach. Training slabs touch each other and never a validation slab (the split leaves a gap), so a run ends
    before the next validation slab."""
    runs: dict[tuple, list[list[int]]] = {}
    for item in items:
        if "axis" in item and "slices" in item:
            runs.setdefault((item["image"], item.get("label"), item["axis"]), []).append(list(item["slices"]))
    for key, ranges in runs.items():
        merged: list[list[int]] = []
        for lo, hi in sorted(ranges):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        runs[key] = merged
    out = []
    for item in items:
        key = (item["image"], item.get("label"), item.get("axis"))
        if key in runs:
            lo, hi = item["slices"]
            item = {**item, "tilt_bounds": next(r for r in runs[key] if r[0] <= lo and hi <= r[1])}
        out.append(item)
    return out


class _VolumeCache:
    """Preprocessed volumes keyed by the item fields that determine them (least recently used dropped)."""

    def __init__(self, preprocess: Compose, fields: tuple[str, ...], size: int) -> None:
        self.preprocess, self.fields, self.size = preprocess, fields, size
        self._store: OrderedDict[tuple, dict] = OrderedDict()

    def get(self, item: dict) -> dict:
        key = tuple(item.get(f) for f in self.fields)
        if key not in self._store:
            self._store[key] = self.preprocess({f: item[f] for f in self.fields if f in item})
            if len(self._store) > self.size:
                self._store.popitem(last=False)
        self._store.move_to_end(key)
        return self._store[key]


class _SliceDataset(Dataset, Randomizable):
    """Shared plumbing: items, the volume cache and a random ``sample`` pipeline seeded with the dataset."""

    sample: Compose

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> _SliceDataset:
        super().set_random_state(seed, state)
        self.sample.set_random_state(seed, state)
        return self

    def randomize(self, data: object = None) -> None:
        pass


class ImageSliceDataset(_SliceDataset):
    """2D images (no labels) from datalist items with an ``image``: for image-level evaluation and image–text
    pairs. Yields ``{"image": [1, S, S], "modality", "text", "source"}``."""

    def __init__(self, items: Sequence[dict], *, image_size: int = 128, cache_size: int = 8) -> None:
        if not items:
            raise ValueError("the dataset needs at least one item.")
        self.items = list(items)
        self.sample = Compose(slice_transforms(["image"], image_size))
        self._cache = _VolumeCache(preprocess_transform(["image"]), ("image", "modality", "window"), cache_size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        sample = self.sample({**item, **self._cache.get(item)})
        image = torch.as_tensor(sample["image"]).float()
        return {"image": image, "modality": item.get("modality"), "text": item.get("text"), "source": item["image"]}

    def readable_indices(self, what: str = "images") -> list[int]:
        """Indices of the items that load, each loaded once; an unreadable one (e.g. a multi-frame 16-bit
        palette-colour ultrasound file, which ITK does not wrap) is skipped with a one-line message naming ``what``
        and the file."""
        readable = []
        for index, item in enumerate(self.items):
            try:
                self[index]
                readable.append(index)
            except RuntimeError as err:  # MONAI wraps the reader's error
                reason = str(err.__cause__ or err).strip().splitlines()[0]
                print(f"{what}: skipping {item['image']}: {reason}")
        return readable


class RegionSliceDataset(_SliceDataset):
    """Random 2D region samples from label-map datalist items (form (a), see :mod:`medpclip.data.datalists`).

    Args:
        items: validated items (``image``, ``label``, ``labels``, optional ``axis``/``slices``/``modality``).
        image_size: side of the square model input.
        num_regions: regions ``R`` per sample (prompts per image).
        samples_per_item: samples per item per epoch (``len = len(items) * samples_per_item``).
        whole_image_prob: chance that a region is the whole image (captioned by modality).
        displace: chance (``True``: always) to move a slice inside the frame (rotation +-20 deg, a stretch of
            0.8-1.2 along its first axis, shift +-20 %, orientation kept) so that a region cannot be named from its
            position alone; the undisplaced label map is kept to report the position-only guess
            (``region_position_guess``: the label an atlas lookup at the mask's voxels gives).
        elastic: chance to deform a slice and its labels smoothly (:func:`elastic_transforms`), before any
            displacement, as another subject's anatomy or a slice a few millimetres away would differ.
        appearance: chance of each part of :func:`appearance_augmentation` on a slice's image (labels untouched), as
            another subject or scanner would look.
        tilt: chance to cut a slice on a plane tilted up to 15 degrees instead of along the axis, folded flat at the
            ends of the run of touching slabs that the items of one image and axis give (:func:`tilt_bounds`), so
            never reaching a validation slab.
        position_guess: carry ``region_position_guess`` on displaced samples (evaluation; training skips it).
        locations: carry ``region_locations`` (:func:`region_locations`): where each region lies in its volume,
            whatever displacement moved it in the frame (a training target).
        reference_slices: for each ``(label file, axis)``, the slice indices a model was trained on; an undisplaced
            sample then also carries, per region, the classes that an atlas lookup under its mask on the nearest of
            those slices gives, most frequent first (``region_nearest_training``): what memorising the training
            slices by position names, without any depth in between.
        prior_offset: with ``> 0``, each region also comes as slice propagation prompts it: its mask on a slice 1 to
            ``prior_offset`` steps away as the prior, a click inside that mask and its tight box (``region_prior_*``,
            see :class:`~medpclip.data.regions.SampleRegionPromptsd`; the ``propagated`` form of :class:`RegionBatch`).
        cache_size: preprocessed volumes kept per process.
    """

    def __init__(
        self,
        items: Sequence[dict],
        *,
        image_size: int = 128,
        num_regions: int = 4,
        samples_per_item: int = 1,
        whole_image_prob: float = 0.0,
        displace: float = 0.0,
        elastic: float = 0.0,
        appearance: float = 0.0,
        tilt: float = 0.0,
        position_guess: bool = True,
        locations: bool = False,
        box_shrink: float = 0.0,
        prior_offset: int = 0,
        reference_slices: Mapping[tuple[str, int], Sequence[int]] | None = None,
        knowledge: KnowledgeBase | None = None,
        cache_size: int = 8,
    ) -> None:
        if not items:
            raise ValueError("the dataset needs at least one item.")
        self.items = tilt_bounds(items) if tilt else list(items)
        self.displace, self.position_guess, self.locations = displace, position_guess, locations
        self.reference_slices = {} if displace else dict(reference_slices or {})
        self._reference_label = Compose(slice_transforms(["label"], image_size))
        self.knowledge = knowledge or default_knowledge_base()
        # a region's mask includes its parts (the liver includes its tumours), from the knowledge-base hierarchy
        self._parts = [label_parts(i["labels"], self.knowledge, i.get("label_source")) for i in self.items]
        self.samples_per_item = samples_per_item
        self.sample = Compose(
            [
                *slice_transforms(["image", "label"], image_size, prior_offset, tilt),
                *(elastic_transforms(float(elastic), with_prior=prior_offset > 0) if elastic else []),
                *(displace_transforms(image_size, float(displace), with_prior=prior_offset > 0) if displace else []),
                SampleRegionPromptsd(num_regions=num_regions, whole_image_prob=whole_image_prob, box_shrink=box_shrink),
                RegionCaptionsd(self.knowledge),
            ]
        )
        self.appearance = appearance_augmentation(appearance) if appearance else None
        fields = ("image", "label", "modality", "window")
        self._cache = _VolumeCache(preprocess_transform(["image", "label"]), fields, cache_size)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> _SliceDataset:
        super().set_random_state(seed, state)
        if self.appearance is not None:
            self.appearance.set_random_state(None if seed is None else seed + 1, state)
        return self

    def __len__(self) -> int:
        return len(self.items) * self.samples_per_item

    def __getitem__(self, index: int) -> dict:
        item = self.items[index % len(self.items)]
        parts = self._parts[index % len(self.items)]
        volumes = self._cache.get(item)
        sample = self.sample({**item, **volumes, "label_names": item["labels"], "label_parts": parts})
        if self.displace and self.position_guess:
            atlas = torch.as_tensor(sample["atlas"])[0]
            sample["region_position_guess"] = [
                next(iter(self._atlas_ranking(atlas, mask, item)), None) for mask in sample["region_masks"] > 0.5
            ]
        if self.locations:
            values = sample["region_values"].tolist()
            axis, index = sample["slice_axis"], sample["slice_index"]
            sample["region_locations"] = region_locations(volumes["label"], axis, index, values, parts)
        reference = self.reference_slices.get((item["label"], sample["slice_axis"]))
        if reference:
            nearest = min(reference, key=lambda t: abs(t - sample["slice_index"]))
            where = {"axis": sample["slice_axis"], "slice": nearest}
            atlas = torch.as_tensor(self._reference_label({"label": volumes["label"], **where})["label"])[0]
            sample["region_nearest_training"] = [
                self._atlas_ranking(atlas, mask, item) for mask in sample["region_masks"] > 0.5
            ]
        image = torch.as_tensor(sample["image"]).float()
        return {
            "image": image if self.appearance is None else self.appearance(image),
            **{k: sample[k] for k in sample if k.startswith("region_")},
            "modality": item.get("modality"),
            "source": item["image"],
            "slice_axis": sample["slice_axis"],
            "slice_index": sample["slice_index"],
            "laterality_visible": sample["laterality_visible"],
        }

    def _atlas_ranking(self, atlas: torch.Tensor, mask: torch.Tensor, item: dict) -> list[str]:
        """Entries of the labels of ``atlas [S, S]`` under ``mask [S, S]``, most frequent first (background out):
        the first is what an atlas lookup at the mask's pixels names."""
        values = atlas.long()[mask]
        values = values[values > 0]
        if not len(values):
            return []
        labels, counts = values.unique(return_counts=True)
        ranked = []
        for label in labels[counts.argsort(descending=True, stable=True)].tolist():
            name = item["labels"].get(str(label))
            entry = self.knowledge.lookup(name, item.get("label_source")) if name else None
            if entry is not None and entry.id not in ranked:
                ranked.append(entry.id)
        return ranked


def region_locations(
    label: torch.Tensor, axis: int | None, index: int, values: Sequence[int], parts: Mapping[int, Sequence[int]]
) -> torch.Tensor:
    """Where each region lies in its volume: ``[R, 3]``, the centroid of the voxels of label ``values[r]`` (and its
    ``parts``) on slice ``index`` along ``axis`` of ``label [1, X, Y, Z]``, as fractions of the extent along X, Y
    and Z. A continuous target that, unlike a name, has values between the training slices. NaN rows: the whole
    image (value 0), a 2D item (``axis`` None) or a region absent from the unmoved slice."""
    out = torch.full((len(values), 3), float("nan"))
    if axis is None or label.ndim != 4:
        return out
    volume = np.asarray(label)[0]
    plane = np.take(volume, index, axis=axis).astype(np.int64)
    in_plane = [a for a in range(3) if a != axis]
    for r, value in enumerate(values):
        where = np.argwhere(region_mask(plane, value, parts)) if value else ()
        if not len(where):
            continue
        centre = np.empty(3)
        centre[axis], centre[in_plane] = index, where.mean(0)
        out[r] = torch.from_numpy((centre + 0.5) / volume.shape)
    return out


def elastic_transforms(prob: float, with_prior: bool = False) -> list:
    """With chance ``prob``, one smooth random deformation of image and label (and the neighbouring slice's label):
    control points every 32 pixels moved by 1 to 4 pixels (MONAI ``Rand2DElasticd``)."""
    keys, modes = _moved_keys(with_prior)
    return [
        Rand2DElasticd(keys, spacing=(32, 32), magnitude_range=(1.0, 4.0), prob=prob, mode=modes, padding_mode="zeros")
    ]


def _moved_keys(with_prior: bool) -> tuple[list[str], list[str]]:
    """The keys a spatial augmentation moves together (image, label, the neighbouring slice's label) and their
    interpolation: bilinear for the image, nearest for label maps."""
    labels = ["label", "label_neighbour"] if with_prior else ["label"]
    return ["image", *labels], ["bilinear"] + ["nearest"] * len(labels)


# how far a displaced slice moves in its frame (ARCHITECTURE.md section 6): rotation up to 0.35 rad (20 deg), scale
# from 0.8 to 1.2, shift up to 20 % of the side; read at each call (scripts/displacement_parts.py varies them).
# RandAffine scales only the axes it is given a range for, so one number stretches the first axis alone: every
# displaced figure in docs/results.md was measured so (scaling both axes alike names no better there, session 36)
DISPLACE_ROTATION, DISPLACE_SCALE, DISPLACE_SHIFT = 0.35, 0.2, 0.2


def displace_transforms(image_size: int, prob: float = 1.0, with_prior: bool = False) -> list:
    """Keep the registered label map as ``atlas``, then (with chance ``prob``) move image and label (and the
    neighbouring slice's label) together inside the frame."""
    keys, modes = _moved_keys(with_prior)
    shift = DISPLACE_SHIFT * image_size
    return [
        CopyItemsd(keys="label", names="atlas"),
        RandAffined(
            keys=keys,
            prob=prob,
            rotate_range=DISPLACE_ROTATION,
            scale_range=DISPLACE_SCALE,
            translate_range=(shift, shift),
            mode=modes,
            padding_mode="zeros",
        ),
    ]


def image_augmentation(image_size: int, prob: float) -> Compose:
    """Augmentation of one image-level training image ``[1, S, S]`` in ``[0, 1]``, each part with chance ``prob``:
    any of the 8 grid orientations (files store rows or columns first, mirrored or not), a rotation of up to 15
    degrees with a zoom from 0.6 (the anatomy small on black, as clinical fields of view are framed) to 1.25 and a
    shift of up to 10 %, and a gamma from 0.7 to 1.5 (windows and display curves differ between scanners)."""
    return Compose(
        [
            RandRotate90(prob=prob, max_k=3),
            RandFlip(prob=prob / 2, spatial_axis=0),
            RandZoom(prob=prob, min_zoom=0.6, max_zoom=1.25, padding_mode="constant"),  # isotropic, size kept
            RandAffine(
                prob=prob,
                rotate_range=0.26,
                translate_range=(0.1 * image_size, 0.1 * image_size),
                padding_mode="zeros",
            ),
            RandAdjustContrast(prob=prob, gamma=(0.7, 1.5)),
            EnsureType(data_type="tensor", track_meta=False),
        ]
    )


def mr_augmentation(prob: float) -> Compose:
    """What real MR images carry and the MNI152 template, an average of 152 brains that most MR training images
    come from, does not, on one image ``[1, S, S]`` in ``[0, 1]``, each part with chance ``prob``: a smooth bias
    field (coil sensitivity), Gibbs ringing at edges (a truncated k-space), a coarse acquisition matrix (down to half
    the grid) and Rician noise (magnitude images; Rayleigh-distributed in the background), scaled back to
    ``[0, 1]``. On their own they did not stop held-out MR files being called ultrasound; drawing the real MR
    files more often did (``modality_file_share``, docs/results.md, session 19)."""
    return Compose(
        [
            RandBiasField(prob=prob, coeff_range=(0.0, 0.15)),
            RandGibbsNoise(prob=prob, alpha=(0.0, 0.5)),
            RandSimulateLowResolution(prob=prob, upsample_mode="bilinear", zoom_range=(0.5, 1.0)),
            RandRicianNoise(prob=prob, std=0.1),  # the standard deviation drawn from 0 to 0.1
            ScaleIntensity(minv=0.0, maxv=1.0),  # back to [0, 1] as the loader scales: no saturated bias field
            EnsureType(data_type="tensor", track_meta=False),
        ]
    )


def appearance_augmentation(prob: float) -> Compose:
    """Another subject's or scanner's look on one slice ``[1, S, S]`` in ``[0, 1]``, each part with chance ``prob``:
    a gamma from 0.7 to 1.5, then :func:`mr_augmentation`'s bias field, ringing, coarser matrix and noise. The brain
    template is an average of 152 brains, smoother, cleaner and more even than any one subject."""
    return Compose([RandAdjustContrast(prob=prob, gamma=(0.7, 1.5)), mr_augmentation(prob)])


@dataclass
class RegionBatch:
    """``B`` samples with ``R`` regions each (``K`` clicks per region, images ``S x S``).

    Attributes:
        images: ``[B, 1, S, S]`` in ``[0, 1]``.
        masks: ``[B, R, S, S]`` target masks.
        boxes: ``[B, R, 4]``; points ``[B, R, K, 2]``; point_labels ``[B, R, K]``.
        texts, entry_ids, names: ``B`` lists of ``R`` captions / knowledge-base ids / dataset label names.
        modalities: ``B`` modality names (``"CT"``, ``"MR T1"``, ...) or None.
        position_guess: for displaced samples, ``B`` lists of ``R`` position-only guesses (entry ids or None).
        nearest_training: for samples of a dataset with ``reference_slices``, ``B`` lists of ``R`` rankings of entry
            ids by an atlas lookup on the nearest training slice.
        laterality_visible: ``B`` flags, False for sagittal slices (left and right twins look the same there).
        prior_masks, prior_points, prior_boxes: ``[B, R, S, S]``, ``[B, R, 1, 2]``, ``[B, R, 4]``: each region as
            slice propagation prompts it (from a neighbouring slice), when the dataset draws them.
        locations: ``[B, R, 3]`` where each region lies in its volume (:func:`region_locations`), when the dataset
            draws them.
    """

    images: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor
    points: torch.Tensor
    point_labels: torch.Tensor
    texts: list[list[str]]
    entry_ids: list[list[str]]
    names: list[list[str]]
    modalities: list[str | None]
    position_guess: list[list[str | None]] | None = None
    nearest_training: list[list[list[str]]] | None = None
    laterality_visible: list[bool] | None = None
    prior_masks: torch.Tensor | None = None
    prior_points: torch.Tensor | None = None
    prior_boxes: torch.Tensor | None = None
    locations: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> RegionBatch:
        tensors = (
            *("images", "masks", "boxes", "points", "point_labels"),
            *("prior_masks", "prior_points", "prior_boxes", "locations"),
        )
        return replace(self, **{n: getattr(self, n).to(device) for n in tensors if getattr(self, n) is not None})

    def prompts(self, form: str) -> RegionPrompts:
        """The regions as prompts of one form: ``mask``, ``box``, ``points``, ``box+points`` or ``propagated`` (a
        click inside the neighbouring slice's mask and that mask's box; the mask itself is the decoder's prior)."""
        if form == PROPAGATED:
            if self.prior_masks is None:
                raise ValueError("the propagated prompt form needs a dataset that draws priors (prior_offset > 0).")
            return RegionPrompts(points=self.prior_points, boxes=self.prior_boxes)
        if form not in PROMPT_FORMS:
            raise ValueError(f"prompt form {form!r} is not one of {', '.join(PROMPT_FORMS)}, {PROPAGATED}.")
        if form == "mask":
            return RegionPrompts(masks=self.masks)
        boxes = self.boxes if "box" in form else None
        points = (self.points, self.point_labels) if "points" in form else (None, None)
        return RegionPrompts(points=points[0], point_labels=points[1], boxes=boxes)


def collate_regions(samples: list[dict]) -> RegionBatch:
    """Stack :class:`RegionSliceDataset` samples into a :class:`RegionBatch`."""
    return RegionBatch(
        images=torch.stack([s["image"] for s in samples]),
        masks=torch.stack([s["region_masks"] for s in samples]),
        boxes=torch.stack([s["region_boxes"] for s in samples]),
        points=torch.stack([s["region_points"] for s in samples]),
        point_labels=torch.stack([s["region_point_labels"] for s in samples]),
        texts=[s["region_texts"] for s in samples],
        entry_ids=[s["region_entry_ids"] for s in samples],
        names=[s["region_names"] for s in samples],
        modalities=[s["modality"] for s in samples],
        position_guess=[s["region_position_guess"] for s in samples] if "region_position_guess" in samples[0] else None,
        nearest_training=(
            [s["region_nearest_training"] for s in samples] if "region_nearest_training" in samples[0] else None
        ),
        laterality_visible=[bool(s.get("laterality_visible", True)) for s in samples],
        locations=torch.stack([s["region_locations"] for s in samples]) if "region_locations" in samples[0] else None,
        **{
            f"prior_{name}": torch.stack([s[f"region_prior_{name}"] for s in samples])
            for name in ("masks", "points", "boxes")
            if "region_prior_masks" in samples[0]
        },
    )
