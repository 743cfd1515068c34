"""Training on MONAI/ignite: ``SupervisedTrainer`` with :class:`RegionTrainStep`, a progress bar, TensorBoard,
validation every N iterations, atomic checkpoints (model, optimizer, scheduler, trainer) and resume."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint, DiskSaver, ProgressBar
from monai.engines import SupervisedTrainer
from monai.handlers import TensorBoardStatsHandler
from torch.utils.data import DataLoader

from medpclip.atomic import atomic_write_json
from medpclip.data.datalists import load_datalist
from medpclip.data.dataset import RegionSliceDataset, collate_regions
from medpclip.engines.steps import RegionTrainStep
from medpclip.engines.validation import Validator
from medpclip.knowledge import default_knowledge_base
from medpclip.networks import build_model, save_checkpoint
from medpclip.optim import parameter_groups

__all__ = ["TrainConfig", "train", "latest_checkpoint"]


@dataclass
class TrainConfig:
    """One training run. Paths are relative to the working directory."""

    out_dir: str = "runs/tiny"
    model: str = "tiny"
    region_mode: str = "medpclip"
    train_datalists: list[str] = field(default_factory=list)
    val_datalists: list[str] = field(default_factory=list)
    modality_datalist: str | None = None
    iterations: int = 1000
    batch_size: int = 8
    num_regions: int = 8
    whole_image_prob: float = 0.05
    displace: bool = False  # geometric augmentation: training slices rotated/scaled/shifted inside the frame
    lr: float = 1e-3
    warmup: int = 50
    eval_every: int = 250
    checkpoint_every: int = 50
    eval_samples: int = 48
    num_workers: int = 2
    threads: int = 2
    seed: int = 0

    @classmethod
    def from_json(cls, path: str | Path, **overrides: object) -> TrainConfig:
        data = {**json.loads(Path(path).read_text()), **{k: v for k, v in overrides.items() if v is not None}}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"description"}
        if unknown:
            raise ValueError(f"unknown training settings in {path}: {', '.join(sorted(unknown))}.")
        return cls(**{k: v for k, v in data.items() if k in known})


def latest_checkpoint(folder: Path) -> Path | None:
    """The training checkpoint with the highest iteration in ``folder``, if any."""
    found = sorted(folder.glob("checkpoint_*.pt"), key=lambda p: int(p.stem.rsplit("_", 1)[-1]))
    return found[-1] if found else None


def train(config: TrainConfig) -> Path:
    """Train (resuming from the latest checkpoint in ``out_dir/checkpoints``) and write ``out_dir/model.pt``."""
    if not config.train_datalists:
        raise ValueError("train_datalists is empty: give at least one label datalist.")
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", asdict(config))
    knowledge = default_knowledge_base()
    items = [item for path in config.train_datalists for item in load_datalist(path, "training")]
    # samples_per_item only sizes one pass of the loader; the iteration budget decides how long training runs
    dataset = RegionSliceDataset(
        items,
        num_regions=config.num_regions,
        samples_per_item=64,
        whole_image_prob=config.whole_image_prob,
        displace=config.displace,
    ).set_random_state(config.seed)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        collate_fn=collate_regions,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        drop_last=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    model = build_model(config.model, region_mode=config.region_mode)
    optimizer = torch.optim.AdamW(parameter_groups(model, config.lr))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config.warmup, config.iterations))
    epoch_length = config.eval_every  # the budget is enforced by iteration count, so a resumed run may extend it
    max_epochs = math.ceil(config.iterations / epoch_length)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        train_data_loader=loader,
        network=model,
        optimizer=optimizer,
        loss_function=None,
        epoch_length=epoch_length,
        iteration_update=RegionTrainStep(knowledge=knowledge, seed=config.seed),
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: scheduler.step())
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=config.iterations), lambda e: e.terminate())
    to_save = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "trainer": trainer}
    saver = Checkpoint(
        to_save,
        DiskSaver(out / "checkpoints", require_empty=False, atomic=True),
        n_saved=2,
        global_step_transform=lambda engine, _: engine.state.iteration,
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=config.checkpoint_every), saver)
    resume = latest_checkpoint(out / "checkpoints")
    if resume is not None:
        Checkpoint.load_objects(to_save, torch.load(resume, map_location="cpu", weights_only=True))
        # the checkpoint carries the old run's budget; continue the same count toward this run's budget
        state = trainer.state
        state.epoch_length, state.max_epochs = epoch_length, max_epochs
        state.epoch = state.iteration // epoch_length
        print(f"resumed from {resume} at iteration {trainer.state.iteration}")
    ProgressBar(persist=True).attach(trainer, output_transform=lambda out: {"loss": out["loss"]})
    TensorBoardStatsHandler(log_dir=str(out / "tensorboard"), output_transform=lambda out: out).attach(trainer)
    validator = Validator.from_datalists(
        config.val_datalists, config.modality_datalist, samples=config.eval_samples, seed=config.seed
    )
    metrics_log = out / "metrics.jsonl"

    def validate(engine: SupervisedTrainer) -> None:
        if not validator.has_data:
            return
        started = time.perf_counter()
        metrics = validator(model)
        model.train()
        record = {"iteration": engine.state.iteration, "seconds": round(time.perf_counter() - started, 1), **metrics}
        with metrics_log.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record))

    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=config.eval_every), validate)
    trainer.add_event_handler(
        Events.COMPLETED, lambda e: None if e.state.iteration % config.eval_every == 0 else validate(e)
    )
    trainer.run()
    if trainer.state.iteration % config.checkpoint_every:
        saver(trainer)
    return save_checkpoint(model, out / "model.pt")


def _warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """LambdaLR factor: linear warm-up over ``warmup`` steps, then cosine decay to 5 % at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
