"""Training on MONAI/ignite: ``SupervisedTrainer`` with :class:`RegionTrainStep`, a progress bar, TensorBoard,
validation every N iterations, atomic checkpoints (model, optimizer, scheduler, trainer) and resume. With
``ema_momentum`` an exponential moving average of the weights (ignite ``EMAHandler``) is validated and becomes
``model.pt``; it is less at the mercy of the last few steps than the weights themselves.

A run killed at any moment (``kill -9``, power loss) resumes from its last complete checkpoint: checkpoints are
written to a temporary file, flushed to disk and renamed (:mod:`medpclip.atomic`), temporaries a killed run left
behind are removed on restart, and an unreadable checkpoint is skipped for the one before it. An output folder that
cannot be written (read-only, under a file, disk full) stops training with a one-line ``ValueError``.

Under ``torchrun`` (``WORLD_SIZE > 1``) the run is data-parallel: one process per device (gloo on CPU, NCCL on
GPU), ``DistributedDataParallel`` over the training objective, a ``DistributedSampler``, and rank 0 alone
validating, logging and writing checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist
from ignite.engine import Events
from ignite.handlers import Checkpoint, EMAHandler, ProgressBar
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.engines import SupervisedTrainer
from monai.handlers import TensorBoardStatsHandler
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from medpclip.atomic import atomic_torch_save, atomic_write_json
from medpclip.data.datalists import load_datalist
from medpclip.data.dataset import (
    ImageSliceDataset,
    RegionSliceDataset,
    collate_regions,
    image_augmentation,
    mr_augmentation,
)
from medpclip.data.intensity import MODALITY_CLASSES, modality_family
from medpclip.data.synthetic import SyntheticModalities
from medpclip.engines.steps import RegionTrainStep, TrainingObjective
from medpclip.engines.validation import Validator
from medpclip.knowledge import default_knowledge_base
from medpclip.networks import MedPCLIPConfig, build_model, import_vision_weights, load_checkpoint, save_checkpoint
from medpclip.networks.vit import set_stochastic_depth
from medpclip.optim import parameter_groups

__all__ = ["TrainConfig", "train", "latest_checkpoint"]

PRIOR_OFFSET = 3  # priors 1 to 3 slices away (thin and thick slices); <= the split gap: never a validation slice


# TrainConfig settings that are a chance or a share
_CHANCES = (
    "whole_image_prob",
    "displace",
    "elastic",
    "appearance",
    "tilt",
    "box_shrink",
    "propagation",
    "center_click",
    "mask_naming",
    "synthetic_modalities",
    "modality_augment",
    "mr_augment",
    "modality_file_share",
    "ema_momentum",
    "drop_path",
)


@dataclass
class TrainConfig:
    """One training run. Paths are relative to the working directory."""

    out_dir: str = "runs/tiny"
    model: str = "tiny"
    region_mode: str = "medpclip"
    model_options: dict = field(default_factory=dict)  # MedPCLIPConfig fields that replace the preset's
    train_datalists: list[str] = field(default_factory=list)
    train_repeats: list[int] | None = None  # times each training datalist's items are listed ([3, 1]: 3 to 1 slices)
    val_datalists: list[str] = field(default_factory=list)
    modality_datalist: str | None = None
    iterations: int = 1000
    batch_size: int = 8
    num_regions: int = 8
    whole_image_prob: float = 0.05
    displace: float = 0.0  # geometric augmentation: chance that a training slice is rotated/scaled/shifted in frame
    elastic: float = 0.0  # chance that a training slice and its labels are deformed smoothly (before displacement)
    appearance: float = 0.0  # chance of each part of a training slice's appearance augmentation (gamma, MR artefacts)
    tilt: float = 0.0  # chance that a training slice is cut on a tilted plane (up to 15 deg), inside training slabs
    box_shrink: float = 0.0  # box prompts may cut this share of the mask's extent per side (as propagated boxes do)
    propagation: float = 0.0  # chance that a step prompts every region from its mask on a neighbouring slice
    center_click: float = 0.0  # chance that a step prompts every region as an annotator does (evaluate's protocol)
    mask_naming: float = 0.0  # chance that a step not prompted by masks also names every region from its mask
    vocabulary_weight: float = 1.0  # region classification over every region class of the training datalists
    mask_weight: float = 1.0  # interactive mask loss (0: naming only, the mask decoder untouched, ~half the compute)
    mask_regions: int | None = None  # regions per slice that carry the mask loss, drawn each step (None: all)
    modality_batch: int = 8  # images per step from the modality datalist's training split (0: none)
    synthetic_modalities: float = 0.0  # share of X-ray and ultrasound draws simulated from the training volumes
    modality_augment: float = 0.0  # chance of each part of the modality images' augmentation (image_augmentation)
    mr_augment: float = 0.0  # chance of each part of the MR modality images' own augmentation (mr_augmentation)
    modality_file_share: float = 0.0  # share of a family's draws spread over its files, not its items (slices)
    lr: float = 1e-3
    vision_lr_scale: float = 0.1  # the vision tower's rate relative to lr (0.1 protects pretrained weights)
    alpha_lr_scale: float = 1.0  # the `alpha` mode's alpha conv rate relative to lr
    warmup: int = 50
    drop_path: float = 0.0  # stochastic depth of the vision tower: the last block's chance to skip each branch
    ema_momentum: float = 0.0  # share of each step in the weight average that becomes model.pt (0: the last weights)
    eval_every: int = 250
    checkpoint_every: int = 50
    eval_samples: int = 48
    num_workers: int = 2
    threads: int = 2
    seed: int = 0
    device: str = "cpu"  # "cuda" picks cuda:<LOCAL_RANK> under torchrun
    pretrained: str | None = None  # local open_clip / timm ViT weights (e.g. BiomedCLIP) for the vision tower
    init_checkpoint: str | None = None  # fine-tune: start from this MedP-CLIP checkpoint (its own architecture)
    frozen: list[str] = field(default_factory=list)  # parameter-name prefixes left untrained (e.g. "vision.")
    distill_weight: float = 0.0  # hold the modality images' global embeddings to init_checkpoint's (0: off)
    location_weight: float = 0.0  # say from each region embedding where in its volume the region lies (0: off)

    def __post_init__(self) -> None:
        # A recipe typo such as "displace": true would otherwise train silently with another setting.
        for name in _CHANCES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"training setting {name} must be a number from 0 to 1, not {value!r}.")
        if not isinstance(self.model_options, dict) or set(self.model_options) - set(
            MedPCLIPConfig.__dataclass_fields__
        ):
            raise ValueError(
                f"training setting model_options must map model settings to values, not {self.model_options!r}."
            )
        if not isinstance(self.frozen, list) or not all(isinstance(p, str) and p for p in self.frozen):
            raise ValueError(f"training setting frozen must be a list of parameter-name prefixes, not {self.frozen!r}.")
        for name in ("distill_weight", "mask_weight", "location_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"training setting {name} must be a number, not {value!r}.")
        regions = self.mask_regions
        if regions is not None and (isinstance(regions, bool) or not isinstance(regions, int) or regions < 1):
            raise ValueError(f"training setting mask_regions must be a whole number >= 1 or null, not {regions!r}.")
        for name in ("mask_weight", "location_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"training setting {name} must be >= 0, not {getattr(self, name)!r}.")
        if self.distill_weight < 0 or (self.distill_weight and not (self.init_checkpoint and self.modality_datalist)):
            raise ValueError(
                "training setting distill_weight must be >= 0, and above 0 it needs init_checkpoint (the teacher) "
                f"and modality_datalist (the images held to it), got {self.distill_weight!r}."
            )

    @classmethod
    def from_json(cls, path: str | Path, **overrides: object) -> TrainConfig:
        data = {**json.loads(Path(path).read_text()), **{k: v for k, v in overrides.items() if v is not None}}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"description"}
        if unknown:
            raise ValueError(f"unknown training settings in {path}: {', '.join(sorted(unknown))}.")
        return cls(**{k: v for k, v in data.items() if k in known})


def _freeze(model: torch.nn.Module, prefixes: list[str]) -> None:
    """Stop gradients to every parameter whose name starts with one of ``prefixes``; a prefix that names no
    parameter is a typo and raises a ValueError."""
    names = [name for name, _ in model.named_parameters()]
    unknown = [prefix for prefix in prefixes if not any(name.startswith(prefix) for name in names)]
    if unknown:
        raise ValueError(f"frozen names no parameter of the model: {', '.join(unknown)}.")
    for name, param in model.named_parameters():
        if name.startswith(tuple(prefixes)):
            param.requires_grad_(False)


def latest_checkpoint(folder: Path) -> Path | None:
    """The training checkpoint with the highest iteration in ``folder``, if any."""
    found = _checkpoints(folder)
    return found[-1] if found else None


def _checkpoints(folder: Path) -> list[Path]:
    """``checkpoint_<iteration>.pt`` files in ``folder``, oldest first."""
    found = [p for p in folder.glob("checkpoint_*.pt") if p.stem.rsplit("_", 1)[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.stem.rsplit("_", 1)[-1]))


class _AtomicDiskSaver(BaseSaveHandler):
    """ignite save handler writing through :func:`medpclip.atomic.atomic_torch_save`: the data reach the disk
    (fsync) before the rename, and a failed write (disk full) leaves neither a partial file nor a temporary one."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        with _disk_errors(f"checkpoint {self.folder / filename}"):
            atomic_torch_save(checkpoint, self.folder / filename)

    def remove(self, filename: str) -> None:
        (self.folder / filename).unlink(missing_ok=True)


@contextmanager
def _disk_errors(what: str) -> Iterator[None]:
    """An ``OSError`` while writing ``what`` (no space, no permission, a file where a folder should be) becomes a
    one-line ``ValueError`` naming it."""
    try:
        yield
    except OSError as err:
        raise ValueError(f"cannot write {what} ({err.strerror or type(err).__name__}).") from err


def _remove_stale_temporaries(out: Path) -> list[Path]:
    """Temporary files (``.<name>.<random>.tmp``, see :mod:`medpclip.atomic`) that a killed run left in ``out`` and
    ``out/checkpoints``; only one process trains into an output folder, so none of them is still being written."""
    stale = [p for folder in (out, out / "checkpoints") for p in folder.glob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _resume_state(folder: Path, device: torch.device) -> tuple[Path | None, dict | None]:
    """The newest checkpoint in ``folder`` that loads (``weights_only``), skipping unreadable ones with a message."""
    for path in reversed(_checkpoints(folder)):
        try:
            return path, torch.load(path, map_location=device, weights_only=True)
        except Exception as err:  # a damaged file (e.g. written by another tool): fall back to the one before
            print(f"skipping unreadable checkpoint {path} ({type(err).__name__})")
    return None, None


def train(config: TrainConfig) -> Path:
    """Train (resuming from the latest checkpoint in ``out_dir/checkpoints``) and write ``out_dir/model.pt``."""
    if not config.train_datalists:
        raise ValueError("train_datalists is empty: give at least one label datalist.")
    rank, world = _init_distributed(config.device)
    try:
        return _train(config, rank, world)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _init_distributed(device: str) -> tuple[int, int]:
    """``(rank, world size)``; joins the process group when started by ``torchrun`` with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _train(config: TrainConfig, rank: int, world: int) -> Path:
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if config.device == "cuda" else config.device)
    out = Path(config.out_dir)
    lead = rank == 0  # the one process that validates, logs and writes
    if lead:
        with _disk_errors(f"to the output folder {out}"):
            (out / "checkpoints").mkdir(parents=True, exist_ok=True)
            atomic_write_json(out / "config.json", asdict(config))
        for stale in _remove_stale_temporaries(out):
            print(f"removed {stale}, a temporary file of an interrupted run")
    knowledge = default_knowledge_base()
    if config.init_checkpoint:
        model = load_checkpoint(config.init_checkpoint)
    else:
        # the location target needs the model's location head; model_options may still say so explicitly
        options = {"location_head": True, **config.model_options} if config.location_weight else config.model_options
        model = build_model(config.model, region_mode=config.region_mode, **options)
    if config.pretrained:
        report = import_vision_weights(model, config.pretrained)
        if lead:
            print(f"vision tower initialised from {config.pretrained}: {report}")
    _freeze(model, config.frozen)
    set_stochastic_depth(model.vision, config.drop_path)
    model = model.to(device)
    items = _training_items(config.train_datalists, config.train_repeats)
    # samples_per_item only sizes one pass of the loader; the iteration budget decides how long training runs
    dataset = RegionSliceDataset(
        items,
        image_size=model.image_size,
        num_regions=config.num_regions,
        samples_per_item=64,
        whole_image_prob=config.whole_image_prob,
        displace=config.displace,
        elastic=config.elastic,
        appearance=config.appearance,
        tilt=config.tilt,
        position_guess=False,  # a baseline of the evaluation, a fifth of the sampling time
        locations=config.location_weight > 0,
        box_shrink=config.box_shrink,
        prior_offset=PRIOR_OFFSET if config.propagation else 0,
    ).set_random_state(config.seed + rank)
    sampler = DistributedSampler(dataset, world, rank, seed=config.seed, drop_last=True) if world > 1 else None
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        collate_fn=collate_regions,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        drop_last=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    optimizer = torch.optim.AdamW(
        parameter_groups(model, config.lr, vision_scale=config.vision_lr_scale, alpha_scale=config.alpha_lr_scale)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config.warmup, config.iterations))
    vocabulary = sorted(
        {e for i in items for e in knowledge.map_labels(i["labels"].values(), i.get("label_source")).mapped.values()}
    )
    modality_images = None
    if config.modality_datalist and config.modality_batch:
        modality_images = _modality_batches(
            config.modality_datalist,
            config.modality_batch,
            model.image_size,
            config.seed + rank,
            synthetic=SyntheticModalities(items, config.seed + rank) if config.synthetic_modalities else None,
            synthetic_share=config.synthetic_modalities,
            augment=config.modality_augment,
            mr_augment=config.mr_augment,
            file_share=config.modality_file_share,
        )
    step = RegionTrainStep(
        knowledge=knowledge,
        vocabulary=vocabulary,
        vocabulary_weight=config.vocabulary_weight,
        mask_weight=config.mask_weight,
        mask_regions=config.mask_regions,
        modality_images=modality_images,
        propagation=config.propagation,
        center_click=config.center_click,
        mask_naming=config.mask_naming,
        teacher=load_checkpoint(config.init_checkpoint, device) if config.distill_weight else None,
        distill_weight=config.distill_weight,
        location_weight=config.location_weight,
        seed=config.seed + rank,
    )
    network = model
    if world > 1:  # gradients are averaged only when the forward runs through DDP: wrap the whole objective
        network = DistributedDataParallel(TrainingObjective(model, step), find_unused_parameters=True)
    epoch_length = config.eval_every  # the budget is enforced by iteration count, so a resumed run may extend it
    max_epochs = math.ceil(config.iterations / epoch_length)
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=max_epochs,
        train_data_loader=loader,
        network=network,
        optimizer=optimizer,
        loss_function=None,
        epoch_length=epoch_length,
        iteration_update=step,
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: scheduler.step())
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=config.iterations), lambda e: e.terminate())
    to_save = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "trainer": trainer}
    ema = EMAHandler(model, momentum=config.ema_momentum) if config.ema_momentum else None
    if ema is not None:  # before the checkpoint handler, so that a checkpoint holds this iteration's average
        ema.attach(trainer, name="ema_momentum")
        to_save["ema_model"] = ema.ema_model
    saver = Checkpoint(
        to_save,
        _AtomicDiskSaver(out / "checkpoints"),
        n_saved=2,
        global_step_transform=lambda engine, _: engine.state.iteration,
    )
    if lead:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=config.checkpoint_every), saver)
    resume, saved = _resume_state(out / "checkpoints", device)
    if resume is not None:
        try:
            Checkpoint.load_objects(to_save, saved)
        except (KeyError, RuntimeError, ValueError) as err:  # another model or optimizer than this recipe's
            reason = str(err).strip().splitlines()[0]
            raise ValueError(f"checkpoint {resume} does not fit this recipe: {reason}; use another --out.") from err
        # the checkpoint carries the old run's budget; continue the same count toward this run's budget
        state = trainer.state
        state.epoch_length, state.max_epochs = epoch_length, max_epochs
        state.epoch = state.iteration // epoch_length
        if lead:
            print(f"resumed from {resume} at iteration {trainer.state.iteration}")
    final = model if ema is None else ema.ema_model  # what is validated and written as model.pt
    if lead:
        ProgressBar(persist=True).attach(trainer, output_transform=lambda out: {"loss": out["loss"]})
        TensorBoardStatsHandler(log_dir=str(out / "tensorboard"), output_transform=lambda out: out).attach(trainer)
        _attach_validation(trainer, final, config, out / "metrics.jsonl")
    if trainer.state.iteration < config.iterations:
        trainer.run()
    elif lead:  # restarting a finished run must not train past its budget
        print(f"iteration {trainer.state.iteration} has reached the budget of {config.iterations}: nothing to train")
    if not lead:
        return out / "model.pt"
    if trainer.state.iteration % config.checkpoint_every:
        saver(trainer)
    with _disk_errors(f"model {out / 'model.pt'}"):
        return save_checkpoint(final, out / "model.pt")


def _training_items(datalists: list[str], repeats: list[int] | None) -> list[dict]:
    """The ``training`` items of each datalist, listed ``repeats[k]`` times for datalist ``k`` (default once), so
    that a datalist with few region classes (one organ) does not take as many slices as one with many."""
    repeats = [1] * len(datalists) if repeats is None else list(repeats)
    if len(repeats) != len(datalists) or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in repeats):
        raise ValueError(
            f"train_repeats should give a whole number >= 1 for each of the {len(datalists)} training datalists, "
            f"in their order, got {repeats}."
        )
    return [item for path, r in zip(datalists, repeats, strict=True) for item in load_datalist(path, "training") * r]


def _modality_batches(
    datalist: str,
    batch_size: int,
    image_size: int,
    seed: int,
    synthetic: SyntheticModalities | None = None,
    synthetic_share: float = 0.0,
    augment: float = 0.0,
    mr_augment: float = 0.0,
    file_share: float = 0.0,
) -> Iterator[tuple[torch.Tensor, list[str], torch.Tensor]]:
    """Endless ``(images [N, 1, S, S], modalities, originals [N, 1, S, S])`` batches from a modality datalist's
    training split, each modality family drawn equally often (ultrasound and radiographs are rare in the offline
    data). Within a family, ``file_share`` of its draws go to each of its source files equally and the rest to each
    of its items equally: the slices of one volume are items of one file, so with 0 the MNI152 template's 347 slices
    take nearly every MR draw and the two real MR files almost none.

    With ``synthetic``, that share of the X-ray and ultrasound draws is simulated instead. With ``mr_augment`` above
    0, MR images get :func:`mr_augmentation`, then with ``augment`` above 0 every image, real or simulated, gets
    :func:`image_augmentation` (each part with that chance): the real training files are a few fixed frames, which
    the model would otherwise learn by their framing. ``originals`` are the images before augmentation (``images``
    itself without either)."""
    items = [i for i in load_datalist(datalist, "training") if modality_family(i.get("modality")) in MODALITY_CLASSES]
    if not items:
        raise ValueError(f"{datalist} has no training images of the modalities {', '.join(MODALITY_CLASSES)}.")
    dataset = ImageSliceDataset(items, image_size=image_size, cache_size=len(items)).set_random_state(seed)
    readable = dataset.readable_indices("modality images")  # loads each file once into the cache
    family_of = {i: modality_family(items[i]["modality"]) for i in readable}
    families = Counter(family_of.values())
    files = Counter((family_of[i], items[i]["image"]) for i in readable)
    files_per_family = Counter(family for family, _ in files)
    weights = [
        (1 - file_share) / families[family_of[i]]
        + file_share / (files_per_family[family_of[i]] * files[family_of[i], items[i]["image"]])
        for i in readable
    ]
    augment_all = image_augmentation(image_size, augment).set_random_state(seed) if augment else None
    augment_mr = mr_augmentation(mr_augment).set_random_state(seed + 1) if mr_augment else None
    generator = torch.Generator().manual_seed(seed)
    while True:
        picked = torch.multinomial(torch.tensor(weights), batch_size, replacement=True, generator=generator)
        originals, modalities = [], []
        for index in (readable[int(i)] for i in picked):
            modality = items[index]["modality"]
            family = modality_family(modality)
            simulate = (
                synthetic and family in synthetic.FAMILIES and torch.rand(1, generator=generator) < synthetic_share
            )
            originals.append(synthetic(family, image_size) if simulate else dataset[index]["image"])
            modalities.append(modality)
        originals = torch.stack(originals)
        images = originals
        # `is not None`, not truthiness: a Compose's len() builds a flattened Compose, which reseeds every
        # transform from the global seed and made the augmented draws irreproducible
        if augment_mr is not None:
            is_mr = [modality_family(m) == "MR" for m in modalities]
            images = torch.stack([augment_mr(i) if mr else i for i, mr in zip(images, is_mr, strict=True)])
        if augment_all is not None:
            images = torch.stack([augment_all(image) for image in images])
        yield images, modalities, originals


def _attach_validation(trainer: SupervisedTrainer, model: torch.nn.Module, config: TrainConfig, log: Path) -> None:
    """Held-out metrics every ``eval_every`` iterations and at the end, printed and appended to ``log``."""
    validator = Validator.from_datalists(
        config.val_datalists,
        config.modality_datalist,
        samples=config.eval_samples,
        seed=config.seed,
        image_size=model.image_size,
    )

    def validate(engine: SupervisedTrainer) -> None:
        if not validator.has_data:
            return
        started = time.perf_counter()
        training = model.training
        metrics = validator(model)
        model.train(training)
        record = {"iteration": engine.state.iteration, "seconds": round(time.perf_counter() - started, 1), **metrics}
        with log.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record))

    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=config.eval_every), validate)
    trainer.add_event_handler(
        Events.COMPLETED, lambda e: None if e.state.iteration % config.eval_every == 0 else validate(e)
    )


def _warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """LambdaLR factor: linear warm-up over ``warmup`` steps, then cosine decay to 5 % at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
