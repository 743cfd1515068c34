"""Bad checkpoints through ``medpclip classify|segment --checkpoint`` (in-process) and the loaders behind them
(``load_checkpoint``, and ``load_weights`` that the bundle uses): truncated, empty, not a torch file, pickled code,
another architecture, a MedP-CLIP file with a damaged config or without weights, weights of another region mode, a
folder. ``tests/test_checkpoint.py`` runs the truncated / pickled / mismatched files through the Python loader; here
they go through the CLI, which must answer in one line with exit code 2 and write nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from battery import assert_one_line_error, files_under
from helpers import SHIPPED, needs_checkpoint

from medpclip.networks import GuidanceSegmentationNet, build_model, load_checkpoint, load_weights, save_checkpoint
from medpclip.networks.factory import CHECKPOINT_FORMAT


class _RunsOnLoad:
    """Unpickling this calls ``open(marker, "w")``: code a weights-only load must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _payload(**changes: object) -> dict:
    payload = {"format": CHECKPOINT_FORMAT, "config": {"vision": "tiny"}, "state_dict": {}}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def _save(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def _unet(path: Path) -> Path:
    from monai.networks.nets import BasicUNet

    return _save(path, BasicUNet(spatial_dims=2, features=(4, 4, 4, 4, 4, 4)).state_dict())


def _other_region_mode(path: Path) -> Path:
    """The weights of a tiny Alpha-CLIP-mode model under a config that claims the MedP-CLIP region mode."""
    torch.manual_seed(0)
    save_checkpoint(build_model("tiny", region_mode="alpha"), path)
    payload = torch.load(path, weights_only=True)
    payload["config"]["region_mode"] = "medpclip"
    return _save(path, payload)


# name: (builder(path) -> path, fragment)
BAD_CHECKPOINTS = {
    "truncated": (lambda p: p.write_bytes(SHIPPED.read_bytes()[:100_000]), "truncated or not a weights file"),
    "empty file": (lambda p: p.write_bytes(b""), "truncated or not a weights file"),
    "not a torch file": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64), "truncated or not a weights file"),
    "pickled code": (lambda p: _save(p, _payload(hook=_RunsOnLoad(p.with_name("ran")))), "never run"),
    "another architecture (a UNet)": (_unet, "not a MedP-CLIP checkpoint"),
    "a bare list of tensors": (lambda p: _save(p, [torch.zeros(3)]), "not a MedP-CLIP checkpoint"),
    "no weights": (lambda p: _save(p, _payload(state_dict=None)), "damaged"),
    "config is not a mapping": (lambda p: _save(p, _payload(config=[1, 2])), "damaged"),
    "unknown config key": (lambda p: _save(p, _payload(config={"vision": "tiny", "depth": 9})), "unknown model"),
    "size given as text": (lambda p: _save(p, _payload(config={"vision": "tiny", "embed_dim": "x"})), "invalid model"),
    "weights of another region mode": (_other_region_mode, "does not fit its own model configuration"),
    "a folder": (lambda p: p.mkdir(), "is a folder"),
}


def _build(case: str, tmp_path: Path) -> Path:
    path = tmp_path / "checkpoints" / "model.pt"
    path.parent.mkdir()
    BAD_CHECKPOINTS[case][0](path)
    return path


@needs_checkpoint
@pytest.mark.parametrize("command", ["classify", "segment"])
@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_one_line_exit_2_and_writes_nothing(cli, good, tmp_path, case, command):
    checkpoint = _build(case, tmp_path)
    before = files_under(tmp_path)
    if command == "classify":
        args = ["classify", good["nii2d"], "--labels", "liver,spleen"]
    else:
        args = ["segment", good["nii2d"], "--point", "5,5", "--out", tmp_path / "out" / "mask.nii.gz"]
    line = assert_one_line_error(*cli(*args, "--checkpoint", checkpoint), BAD_CHECKPOINTS[case][1])
    assert str(checkpoint) in line
    assert files_under(tmp_path) == before, "nothing written (and no pickled code ran)"


def test_pickled_code_never_runs(tmp_path):
    path = _build("pickled code", tmp_path)
    with pytest.raises(ValueError, match="cannot load checkpoint"):
        load_checkpoint(path)
    assert not path.with_name("ran").exists()


@pytest.mark.parametrize("case", ["weights of another region mode", "no weights", "another architecture (a UNet)"])
def test_bundle_network_refuses_weights_that_do_not_fit(tmp_path, case):
    """``inference.json`` builds its ``network_def`` (tiny, MedP-CLIP mode) and loads the file with ``load_weights``."""
    network = build_model("tiny", model_class=GuidanceSegmentationNet)
    path = _build(case, tmp_path)
    fragment = "does not fit" if case.startswith("weights") else BAD_CHECKPOINTS[case][1]
    with pytest.raises(ValueError, match=fragment):
        load_weights(network, path)
