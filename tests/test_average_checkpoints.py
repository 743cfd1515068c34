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


def test_a_part_keeps_its_own_weight(tmp_path):
    script = load_script("average_checkpoints")
    torch.manual_seed(2)
    first = save_checkpoint(build_model("tiny"), tmp_path / "first.pt")
    second = save_checkpoint(build_model("tiny"), tmp_path / "second.pt")
    out = tmp_path / "out.pt"
    argv = [str(first), str(second), "--weight", "1", "--part", "mask_decoder.=0", "--out", str(out)]
    assert script.main(argv) == 0
    a, b = load_checkpoint(first).state_dict(), load_checkpoint(second).state_dict()
    mixed = load_checkpoint(out).state_dict()
    decoder = [k for k in a if k.startswith("mask_decoder.")]
    assert decoder and all(torch.equal(mixed[k], a[k]) for k in decoder)
    assert all(torch.equal(mixed[k], b[k]) for k in a if k not in decoder)
    assert not torch.equal(a[decoder[0]], b[decoder[0]])


def test_a_part_naming_no_parameter_or_without_a_weight_exits_2(tmp_path, capsys):
    script = load_script("average_checkpoints")
    tiny = save_checkpoint(build_model("tiny"), tmp_path / "tiny.pt")
    out = tmp_path / "out.pt"
    assert (
        script.main([str(tiny), str(tiny), "--weight", "0.5", "--part", "decoder_of_masks.=0", "--out", str(out)]) == 2
    )
    assert "no parameter name starts with decoder_of_masks." in capsys.readouterr().err
    assert script.main([str(tiny), str(tiny), "--weight", "0.5", "--part", "mask_decoder.=2", "--out", str(out)]) == 2
    assert "got 2.0 for mask_decoder." in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        script.main([str(tiny), str(tiny), "--weight", "0.5", "--part", "mask_decoder.", "--out", str(out)])
    assert stop.value.code == 2 and "PREFIX=WEIGHT" in capsys.readouterr().err and not out.exists()
