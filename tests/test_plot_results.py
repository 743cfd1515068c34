"""scripts/plot_results.py: the training curves of one run or of consecutive stages of one model."""

from __future__ import annotations

import json

from helpers import load_script
from torch.utils.tensorboard import SummaryWriter


def _fake_run(folder, iterations: list[int], accuracy: float, brain: str = "aal3"):
    """A run folder with a logged loss per iteration and held-out metrics of the ``brain`` datalist at
    ``iterations``."""
    with SummaryWriter(str(folder / "tensorboard")) as writer:
        for step in range(1, iterations[-1] + 1):
            writer.add_scalar("loss", 1.0 / step, step)
    records = [{"iteration": i, f"{brain}/top1_10way": accuracy, "lits/top1_10way": 1.0} for i in iterations]
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    return folder


def test_stages_follow_each_other_on_one_axis_in_one_colour(tmp_path):
    script = load_script("plot_results")
    first = _fake_run(tmp_path / "one", [50, 100], 0.5)
    second = _fake_run(tmp_path / "two", [50, 100], 0.7)
    figure = script.training_curves([first, second])
    left, right = figure.axes
    accuracy = [line for line in right.lines if line.get_marker() == "o"]
    assert [list(line.get_xdata()) for line in accuracy] == [[50, 100], [150, 200]]
    assert accuracy[0].get_color() == accuracy[1].get_color()
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["aal3/top1_10way"]
    losses = [line for line in left.lines if line.get_linestyle() == "-"]
    assert min(losses[1].get_xdata()) > max(losses[0].get_xdata())  # stage two starts where stage one ended
    dashed = [line for line in right.lines if line.get_linestyle() == "--"]
    assert [list(line.get_xdata()) for line in dashed] == [[100, 100]]


def test_a_stage_validated_on_another_brain_gets_its_own_curve(tmp_path):
    script = load_script("plot_results")
    first = _fake_run(tmp_path / "one", [50, 100], 0.5)
    second = _fake_run(tmp_path / "two", [50, 100], 0.7, brain="aal3_whole")
    right = script.training_curves([first, second]).axes[1]
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["aal3/top1_10way", "aal3_whole/top1_10way"]
    accuracy = [line for line in right.lines if line.get_marker() == "o"]
    assert accuracy[0].get_color() != accuracy[1].get_color()


def test_a_run_without_metrics_or_a_missing_checkpoint_exits_2(tmp_path, capsys):
    script = load_script("plot_results")
    run = _fake_run(tmp_path / "one", [50], 0.5)
    assert script.main(["--run", str(run), str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 2
    assert "has no metrics.jsonl" in capsys.readouterr().err
    assert script.main(["--run", str(run), "--out", str(tmp_path / "out")]) == 2
    assert "no checkpoint" in capsys.readouterr().err and not (tmp_path / "out").exists()
