"""Faults in training: start ``medpclip train`` on a tiny phantom recipe, kill it with SIGKILL at random moments
(``--kills`` times), restart it each time, and check after every kill that

* every ``checkpoint_*.pt`` in the run folder loads with ``torch.load(weights_only=True)`` (none is corrupt),
* the restarted run resumes from the last saved iteration (it says so), and its next checkpoint shows the iteration,
  the optimizer (Adam step count) and the scheduler continued from there rather than restarting,

then lets the last run finish and checks the final checkpoint and ``model.pt``. Prints a JSON report (with ``--out``
also writes it) and exits 1 if any check failed. Bounded in time (``--max-seconds``); everything stays in
``--work`` (a temporary folder by default).

    python scripts/kill_resume.py                     # 5 kills, 40 iterations
    python scripts/kill_resume.py --kills 2 --iterations 60 --out kill_resume.json

Each kill comes after the run has written at least one new checkpoint (so every restart has progress to lose):
the odd ones at a random moment within ``--max-delay`` seconds, the even ones in the middle of a checkpoint write
(as soon as its temporary file appears), the moment a non-atomic writer would leave a torn checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def make_recipe(work: Path, iterations: int, checkpoint_every: int) -> Path:
    """A label datalist over one 3D phantom CT (as ``tests/conftest.py`` builds it) and a tiny training recipe."""
    import nibabel as nib
    import numpy as np

    from medpclip.data.phantoms import random_phantom

    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    phantom = random_phantom(seed=1, size=48, dims=3)
    nib.save(nib.Nifti1Image(phantom.image * 400 - 100, np.eye(4)), data / "ct.nii.gz")
    nib.save(nib.Nifti1Image(phantom.labels.astype(np.int16), np.eye(4)), data / "labels.nii.gz")

    def slab(axis: int, lo: int, hi: int) -> dict:
        return {"image": "ct.nii.gz", "label": "labels.nii.gz", "axis": axis, "slices": [lo, hi]}

    datalist = {
        "labels": {str(k): v for k, v in phantom.names.items()},
        "modality": "CT",
        "training": [slab(a, 8, 20) for a in range(3)] + [slab(a, 28, 40) for a in range(3)],
        "validation": [],
    }
    (data / "datalist.json").write_text(json.dumps(datalist))
    recipe = {
        "description": "kill/resume fault test: tiny model, phantom CT, a checkpoint every few iterations",
        "out_dir": str(work / "run"),
        "train_datalists": [str(data / "datalist.json")],
        "iterations": iterations,
        "batch_size": 2,
        "num_regions": 3,
        "modality_batch": 0,
        "eval_every": 10_000,
        "checkpoint_every": checkpoint_every,
        "num_workers": 0,
        "warmup": 1,
    }
    path = work / "recipe.json"
    path.write_text(json.dumps(recipe, indent=2))
    return path


def checkpoint_iterations(folder: Path) -> list[int]:
    found = [p.stem.rsplit("_", 1)[-1] for p in folder.glob("checkpoint_*.pt")]
    return sorted(int(n) for n in found if n.isdigit())


def newest(folder: Path) -> int | None:
    found = checkpoint_iterations(folder)
    return found[-1] if found else None


def check_checkpoints(folder: Path) -> dict:
    """Load every checkpoint with ``weights_only=True``: ``{"checked", "corrupt": [names], "latest", "state"}``;
    ``state`` holds the latest checkpoint's iteration, Adam step and scheduler epoch."""
    checked, corrupt, state = 0, [], None
    for iteration in checkpoint_iterations(folder):
        path = folder / f"checkpoint_{iteration}.pt"
        checked += 1
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            state = {
                "iteration": int(payload["trainer"]["iteration"]),
                "optimizer_step": int(max(s["step"] for s in payload["optimizer"]["state"].values())),
                "scheduler_epoch": int(payload["scheduler"]["last_epoch"]),
            }
            if state["iteration"] != iteration:
                corrupt.append(f"{path.name} holds iteration {state['iteration']}")
        except FileNotFoundError:  # a live run removed its oldest checkpoint meanwhile
            checked -= 1
        except Exception as err:  # what a torn write would give
            corrupt.append(f"{path.name}: {type(err).__name__}: {err}")
    temporaries = sorted(p.name for p in folder.glob("*.tmp")) + sorted(p.name for p in folder.glob(".*.tmp"))
    return {"checked": checked, "corrupt": corrupt, "state": state, "temporaries": sorted(set(temporaries))}


def wait_for_a_write(folder: Path, process: subprocess.Popen, deadline: float) -> str:
    """Poll (every millisecond) until a checkpoint is being written, i.e. its temporary file exists; its name."""
    while process.poll() is None and time.monotonic() < deadline:
        writing = list(folder.glob(".checkpoint_*.tmp"))
        if writing:
            return writing[0].name
        time.sleep(0.001)
    return "none seen"


class Run:
    """One ``medpclip train`` process, its output collected in a log file (no pipe to fill up)."""

    def __init__(self, recipe: Path, log: Path) -> None:
        self.log = log
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "medpclip.cli", "train", "--config", str(recipe)]
        with log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def resumed_from(self) -> int | None:
        found = re.search(r"resumed from \S+ at iteration (\d+)", self.text())
        return int(found.group(1)) if found else None

    def progress(self) -> int | None:
        """The last iteration the progress bar showed (``[i/N]``)."""
        found = re.findall(r"\[(\d+)/\d+\]", self.text())
        return int(found[-1]) if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs before the run may finish (default 5)")
    parser.add_argument("--iterations", type=int, default=40, help="training budget (default 40)")
    parser.add_argument("--checkpoint-every", type=int, default=2, help="checkpoint interval (default 2)")
    parser.add_argument(
        "--max-delay", type=float, default=4.0, help="kill within this many seconds after a new checkpoint"
    )
    parser.add_argument("--max-seconds", type=float, default=900.0, help="give up after this long (default 900)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--work", default=None, help="work folder (default: a new temporary folder)")
    parser.add_argument("--out", default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)

    started = time.monotonic()
    deadline = started + args.max_seconds
    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="kill_resume_"))
    work.mkdir(parents=True, exist_ok=True)
    recipe = make_recipe(work, args.iterations, args.checkpoint_every)
    checkpoints = work / "run" / "checkpoints"
    report: dict = {
        "command": " ".join([Path(sys.executable).name, "scripts/kill_resume.py", *(argv or sys.argv[1:])]),
        "iterations": args.iterations,
        "checkpoint_every": args.checkpoint_every,
        "kills": 0,
        "kill_moments": [],
        "killed_at_iteration": [],  # the progress bar's last iteration when the signal landed
        "last_checkpoint_at_kill": [],
        "resumed_from": [],
        "continued": [],  # first checkpoint after each resume: iteration / Adam step / scheduler epoch
        "checkpoints_checked": 0,
        "corrupt_checkpoints": 0,
        "temporaries_left_by_kills": 0,  # partial files of writes a kill interrupted: never named checkpoint_*.pt
        "temporaries_removed_on_restart": 0,
        "failures": [],
    }
    expected_resume = None
    run_index = 0
    while True:
        run = Run(recipe, work / f"run_{run_index}.log")
        run_index += 1
        baseline = newest(checkpoints)
        killing = report["kills"] < args.kills
        # wait for a checkpoint newer than the one this run resumed from (or, for the last run, for the end)
        while run.process.poll() is None and time.monotonic() < deadline:
            latest = newest(checkpoints)
            if killing and latest is not None and (baseline is None or latest > baseline):
                break
            time.sleep(0.1)
        if expected_resume is not None:
            resumed = run.resumed_from()
            report["resumed_from"].append(resumed)
            if resumed != expected_resume:
                report["failures"].append(f"run {run_index} resumed from {resumed}, expected {expected_resume}")
            report["temporaries_removed_on_restart"] += run.text().count("a temporary file of an interrupted run")
            state = check_checkpoints(checkpoints)["state"]
            if state is not None:
                report["continued"].append(state)
                # Adam's step count and the scheduler follow the trainer's iteration only if they were restored
                if not state["iteration"] == state["optimizer_step"] == state["scheduler_epoch"]:
                    report["failures"].append(f"run {run_index}: optimizer/scheduler did not continue: {state}")
        if time.monotonic() >= deadline:
            run.process.kill()
            run.process.wait()
            report["failures"].append(f"gave up after {args.max_seconds} s")
            break
        if run.process.poll() is not None:  # training finished (or failed) before a kill
            break
        mode = "during a checkpoint write" if report["kills"] % 2 else "at a random moment"
        if mode == "at a random moment":
            time.sleep(rng.uniform(0, args.max_delay))
        else:
            writing = wait_for_a_write(checkpoints, run.process, deadline)
        run.process.send_signal(signal.SIGKILL)  # harmless if it has just finished: it is not reaped yet
        if run.process.wait() != -signal.SIGKILL:  # it finished before the signal landed
            break
        report["kills"] += 1
        report["kill_moments"].append(mode if mode == "at a random moment" else f"{mode} ({writing})")
        report["killed_at_iteration"].append(run.progress())
        found = check_checkpoints(checkpoints)
        report["checkpoints_checked"] += found["checked"]
        report["corrupt_checkpoints"] += len(found["corrupt"])
        report["temporaries_left_by_kills"] += len(found["temporaries"])
        report["failures"] += [f"after kill {report['kills']}: {c}" for c in found["corrupt"]]
        expected_resume = found["state"]["iteration"] if found["state"] else None
        report["last_checkpoint_at_kill"].append(expected_resume)

    returncode = run.process.wait()
    if returncode != 0:
        report["failures"].append(f"the last run exited with {returncode}: {run.text()[-600:]}")
    found = check_checkpoints(checkpoints)
    report["checkpoints_checked"] += found["checked"]
    report["corrupt_checkpoints"] += len(found["corrupt"])
    report["final"] = found["state"]
    report["temporaries_left_at_end"] = found["temporaries"]
    if found["temporaries"]:
        report["failures"].append(f"temporary files left after the last run: {found['temporaries']}")
    if not found["state"] or found["state"]["iteration"] != args.iterations:
        report["failures"].append(f"training did not reach iteration {args.iterations}: {found['state']}")
    elif found["state"]["optimizer_step"] != args.iterations:
        report["failures"].append(f"the optimizer made {found['state']['optimizer_step']} steps in all")
    try:
        from medpclip.networks import load_checkpoint

        load_checkpoint(work / "run" / "model.pt")
        report["model_loads"] = True
    except Exception as err:  # report, do not crash: the JSON is the product of this script
        report["model_loads"] = False
        report["failures"].append(f"model.pt: {type(err).__name__}: {err}")
    report["runs"] = run_index
    report["seconds"] = round(time.monotonic() - started, 1)
    report["work"] = str(work)
    report["ok"] = not report["failures"]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
