"""Checkpoints: config + weights, atomic write, weights_only load, clear errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from medpclip.networks import RegionPrompts, build_model, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("mode", ["medpclip", "alpha"])
def test_round_trip_reproduces_outputs(make_model, tmp_path, images, mode):
    model = make_model(mode)
    path = save_checkpoint(model, tmp_path / "ckpt" / "model.pt")
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"], "no temporary file may be left behind"
    restored = load_checkpoint(path).eval()
    assert restored.config == model.config
    prompts = RegionPrompts(boxes=torch.tensor([[[5.0, 5.0, 70.0, 90.0]]] * 2))
    with torch.inference_mode():
        a, ma = model(images, prompts)
        b, mb = restored(images, prompts)
    torch.testing.assert_close(a.region_embeds, b.region_embeds, atol=0, rtol=0)
    torch.testing.assert_close(ma, mb, atol=0, rtol=0)


def test_checkpoint_is_small_and_loads_with_weights_only(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["config"]["vision"] == "tiny"
    assert path.stat().st_size < 25 * 2**20


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a MedP-CLIP checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_truncated_pickled_and_mismatched_checkpoints_are_refused(tmp_path, tiny_model):
    good = save_checkpoint(tiny_model, tmp_path / "model.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="truncated or not a weights file"):
        load_checkpoint(tmp_path / "truncated.pt")
    torch.save({"format": "x", "code": SimpleNamespace(run=print)}, tmp_path / "pickled.pt")  # needs unpickling code
    with pytest.raises(ValueError, match="cannot load checkpoint"):
        load_checkpoint(tmp_path / "pickled.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    payload["state_dict"] = {k: v[..., :1] if v.ndim else v for k, v in payload["state_dict"].items()}
    torch.save(payload, tmp_path / "mismatched.pt")
    with pytest.raises(ValueError, match="does not fit its own model configuration"):
        load_checkpoint(tmp_path / "mismatched.pt")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"region_mode": "nope"}, "region mode"),
        ({"vision": "huge"}, "vision preset"),
        ({"fusion_layers": (9,)}, "fusion_layers"),
    ],
)
def test_bad_configs_are_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        build_model("tiny", **changes)
