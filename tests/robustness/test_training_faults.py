"""Faults in training: an output folder that cannot be written, a disk that fills up while a checkpoint or the
final model is written, what a crash leaves behind (temporary files, an unreadable checkpoint), a checkpoint of
another recipe, the restart of a finished run, and (slow) ``scripts/kill_resume.py``: SIGKILL at random moments,
restart, no corrupt checkpoint, training state continued.

The in-process runs swap the training step for a cheap one (one real optimizer step over every parameter, without
the model's forward pass): what they test is the checkpoint I/O around it, in a second instead of ten. The slow
kill/resume run trains for real.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from battery import assert_no_temporaries, assert_one_line_error
from helpers import tiny_train_config

from medpclip.engines.training import train

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("quick_step")


class QuickStep:
    """Stands in for ``RegionTrainStep``: a tiny loss over every trainable parameter, so that AdamW keeps a state
    (step count, moments) for each, and the scheduler steps as usual."""

    def __init__(self, **kwargs: object) -> None:
        pass

    def __call__(self, engine, batch) -> dict[str, float]:
        params = [p for p in engine.network.parameters() if p.requires_grad]
        loss = sum(p.float().square().mean() for p in params) * 1e-6
        engine.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        engine.optimizer.step()
        return {"loss": float(loss.detach())}


@pytest.fixture
def quick_step(monkeypatch) -> None:
    import medpclip.engines.training

    monkeypatch.setattr(medpclip.engines.training, "RegionTrainStep", QuickStep)


def write_recipe(tmp_path: Path, datalist: Path, **changes: object) -> Path:
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(tiny_train_config(tmp_path, datalist, **changes).__dict__))
    return path


def checkpoint_names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def fail_saves(monkeypatch, when) -> None:
    """``torch.save`` writes part of the file and then fails with ENOSPC for the payloads ``when(obj)`` picks."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        if when(obj):
            f.write(b"PK\x03\x04 a partial zip")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


# ------------------------------------------------------------------------------------------- unwritable output


@pytest.mark.parametrize("where", ["under a file", "an existing file", "read-only folder"])
def test_unwritable_output_folder_is_one_line_exit_2(cli, tmp_path, phantom_datalist, where):
    (tmp_path / "notes.txt").write_text("a file")
    out = {
        "under a file": tmp_path / "notes.txt" / "run",
        "an existing file": tmp_path / "notes.txt",
        "read-only folder": Path("/sys/medpclip_run"),  # sysfs: no one, root included, may create folders there
    }[where]
    recipe = write_recipe(tmp_path, phantom_datalist)
    before = sorted(tmp_path.rglob("*"))
    code, stdout, stderr = cli("train", "--config", recipe, "--out", out)
    line = assert_one_line_error(code, stdout, stderr, "cannot write to the output folder")
    assert str(out) in line
    assert sorted(tmp_path.rglob("*")) == before, "nothing is created"


@pytest.mark.parametrize("recipe", ["missing.json", "broken.json"])
def test_missing_or_broken_recipe_is_one_line(cli, tmp_path, recipe):
    (tmp_path / "broken.json").write_text('{"iterations": 3,')
    assert_one_line_error(*cli("train", "--config", tmp_path / recipe), recipe if "missing" in recipe else "Expecting")


# ------------------------------------------------------------------------------------------------- disk full


def test_disk_full_at_a_checkpoint_then_the_restart_resumes(tmp_path, phantom_datalist, monkeypatch, capsys):
    """The second checkpoint hits a full disk: one clear error, the first checkpoint intact, nothing partial. Once
    there is room again the restart resumes from that checkpoint, skipping what else a crash may have left (an
    unreadable checkpoint, a temporary file), and continues the optimizer."""
    config = tiny_train_config(tmp_path, phantom_datalist, iterations=3)
    run = Path(config.out_dir)
    checkpoints_saved = []

    def second_checkpoint(obj: dict) -> bool:
        if "trainer" in obj:
            checkpoints_saved.append(obj["trainer"]["iteration"])
        return len(checkpoints_saved) == 2

    real_save = torch.save
    fail_saves(monkeypatch, second_checkpoint)
    with pytest.raises(ValueError, match="No space left on device") as raised:
        train(config)
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and str(run / "checkpoints" / "checkpoint_2.pt") in message
    assert checkpoint_names(run) == ["checkpoint_1.pt"]
    assert torch.load(run / "checkpoints" / "checkpoint_1.pt", weights_only=True)["trainer"]["iteration"] == 1
    assert not (run / "model.pt").exists()
    assert_no_temporaries(run)

    monkeypatch.setattr(torch, "save", real_save)  # room again
    (run / "checkpoints" / "checkpoint_7.pt").write_bytes(b"PK\x03\x04 copied in half")
    stale = run / "checkpoints" / ".checkpoint_8.pt.k2j4h1.tmp"
    stale.write_bytes(b"PK\x03\x04 a write a kill interrupted")
    capsys.readouterr()
    train(config)
    out = capsys.readouterr().out
    assert "skipping unreadable checkpoint" in out and f"removed {stale}" in out
    assert "checkpoint_1.pt at iteration 1" in out
    state = torch.load(run / "checkpoints" / "checkpoint_3.pt", weights_only=True)
    assert state["trainer"]["iteration"] == 3 and state["scheduler"]["last_epoch"] == 3
    assert max(s["step"] for s in state["optimizer"]["state"].values()) == 3, "Adam continued from step 1"
    assert (run / "model.pt").is_file() and not stale.exists()


def test_disk_full_writing_the_model_leaves_no_partial_file(tmp_path, phantom_datalist, monkeypatch):
    config = tiny_train_config(tmp_path, phantom_datalist, iterations=1)
    run = Path(config.out_dir)
    fail_saves(monkeypatch, lambda obj: "format" in obj)  # the model.pt payload, not the trainer checkpoints
    with pytest.raises(ValueError, match=r"cannot write model .*model\.pt \(No space left on device\)"):
        train(config)
    assert not (run / "model.pt").exists()
    assert checkpoint_names(run) == ["checkpoint_1.pt"]
    assert_no_temporaries(run)


# --------------------------------------------------------------------------------------------------- restarts


def test_checkpoint_of_another_recipe_is_a_clear_error(tmp_path, phantom_datalist):
    config = tiny_train_config(tmp_path, phantom_datalist)
    folder = Path(config.out_dir) / "checkpoints"
    folder.mkdir(parents=True)
    other = {"model": {"other.weight": torch.zeros(2)}, "optimizer": {}, "scheduler": {}, "trainer": {}}
    torch.save(other, folder / "checkpoint_5.pt")
    with pytest.raises(ValueError, match="does not fit this recipe"):
        train(config)


def test_restarting_a_finished_run_does_not_train_past_its_budget(tmp_path, phantom_datalist, capsys):
    config = tiny_train_config(tmp_path, phantom_datalist, iterations=2)
    train(config)
    capsys.readouterr()
    train(config)
    assert "has reached the budget of 2" in capsys.readouterr().out
    run = Path(config.out_dir)
    assert checkpoint_names(run) == ["checkpoint_1.pt", "checkpoint_2.pt"]
    assert torch.load(run / "checkpoints" / "checkpoint_2.pt", weights_only=True)["trainer"]["iteration"] == 2


# -------------------------------------------------------------------------------------------------- kill -9


@pytest.mark.slow
def test_kill_resume_script_reports_no_corrupt_checkpoint(tmp_path):
    report_path = tmp_path / "report.json"
    args = ["--kills", "2", "--iterations", "40", "--max-seconds", "480", "--work", str(tmp_path / "work")]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "kill_resume.py"), *args, "--out", str(report_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["failures"] == []
    assert report["kills"] == 2 and report["corrupt_checkpoints"] == 0 and report["checkpoints_checked"] >= 3
    assert report["resumed_from"] == report["last_checkpoint_at_kill"], "each restart resumes from the last save"
    for state in report["continued"]:
        assert state["iteration"] == state["optimizer_step"] == state["scheduler_epoch"]
    assert report["final"] == {"iteration": 40, "optimizer_step": 40, "scheduler_epoch": 40}
    assert report["kill_moments"][1].startswith("during a checkpoint write (.checkpoint_"), "a torn write"
    assert report["temporaries_removed_on_restart"] == report["temporaries_left_by_kills"]
    assert report["model_loads"] and report["temporaries_left_at_end"] == []
