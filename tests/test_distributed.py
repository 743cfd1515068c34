"""Data-parallel training: two CPU processes (gloo) on different batches end a step with identical weights."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _one_step(rank: int, world: int, datalist: str, port: int, results: dict) -> None:
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader

    from medpclip.data import RegionSliceDataset, collate_regions, load_datalist
    from medpclip.engines.steps import RegionTrainStep, TrainingObjective
    from medpclip.networks import build_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    dataset = RegionSliceDataset(load_datalist(datalist), num_regions=2).set_random_state(rank)  # other data per rank
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_regions)))
    torch.manual_seed(rank)  # different initial weights too: DDP must broadcast rank 0's
    model = build_model("tiny")
    step = RegionTrainStep(forms=("box",), seed=0)
    network = DistributedDataParallel(TrainingObjective(model, step), find_unused_parameters=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sum(network(batch).values()).backward()
    optimizer.step()
    checksums = torch.tensor([float(batch.images.sum()), float(sum(p.double().sum() for p in model.parameters()))])
    gathered = [torch.zeros(2) for _ in range(world)]
    dist.all_gather(gathered, checksums.float())
    if rank == 0:
        results["gathered"] = [g.tolist() for g in gathered]
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_steps_keep_ranks_identical(phantom_datalist):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_one_step, args=(2, str(phantom_datalist), port, results), nprocs=2, join=True)
    (images0, weights0), (images1, weights1) = results["gathered"]
    assert images0 != images1, "each rank must train on its own batch"
    assert weights0 == pytest.approx(weights1, rel=1e-6), "gradients must be averaged across ranks"
