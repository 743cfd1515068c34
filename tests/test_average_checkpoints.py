"""scripts/average_checkpoints.py: weight-space interpolation of a checkpoint and its fine-tuned descendant."""

from __future__ import annotations

import pytest
import torch
from helpers import load_script

from medpclip.networks import build_model, load_checkpoint, save_checkpoint


def test_the_average_lies_between_the_two_checkpoints(tmp_path):
    script = load_script("average_checkpoints")
    torch.manual_seed(0)
    first = save_checkpoint(build_model("tiny"), tmp_path / "first.pt")
    second = save_checkpoint(build_model("tiny"), tmp_path / "second.pt")
    assert script.main([str(first), str(second), "--weight", "0.7", "--out", str(tmp_path / "out.pt")]) == 0
    a, b = load_checkpoint(first).state_dict(), load_checkpoint(second).state_dict()
    out = load_checkpoint(tmp_path / "out.pt").state_dict()
    key = "visual_proj.weight"
    assert not torch.equal(a[key], b[key])
    assert torch.allclose(out[key], 0.3 * a[key] + 0.7 * b[key], atol=1e-6)


def test_other_architectures_and_bad_weights_exit_2_and_write_nothing(tmp_path, capsys):
    script = load_script("average_checkpoints")
    tiny = save_checkpoint(build_model("tiny"), tmp_path / "tiny.pt")
    other = save_checkpoint(build_model("tiny", region_mode="global"), tmp_path / "other.pt")
    out = tmp_path / "out.pt"
    assert script.main([str(tiny), str(other), "--weight", "0.5", "--out", str(out)]) == 2
    assert "different architectures" in capsys.readouterr().err
    assert script.main([str(tiny), str(tiny), "--weight", "1.5", "--out", str(out)]) == 2
    assert "from 0 to 1" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_the_end_weights_give_back_each_checkpoint(tmp_path, weight):
    script = load_script("average_checkpoints")
    torch.manual_seed(1)
    first = save_checkpoint(build_model("tiny"), tmp_path / "first.pt")
    second = save_checkpoint(build_model("tiny"), tmp_path / "second.pt")
    script.main([str(first), str(second), "--weight", str(weight), "--out", str(tmp_path / "out.pt")])
    expected = load_checkpoint(second if weight else first).state_dict()
    out = load_checkpoint(tmp_path / "out.pt").state_dict()
    assert all(torch.equal(out[k], v) for k, v in expected.items())
