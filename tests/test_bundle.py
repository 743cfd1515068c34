"""The MONAI Bundle: metadata against the vendored schema, network I/O, TorchScript export, and every config run
through ``python -m monai.bundle`` offline, from the repository root and from another directory."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from helpers import SHIPPED

from medpclip.networks import GuidanceSegmentationNet, build_model, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "bundle" / "configs"
SCHEMA = ROOT / "bundle" / "schema" / "meta_schema_20240725.json"


def monai_bundle(*args: str, cwd: Path, runner: tuple[str, ...] = (sys.executable, "-m")) -> str:
    """Run ``monai.bundle`` offline in ``cwd``; fail with its output unless it exits 0."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [*runner, "monai.bundle", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{' '.join(args[:2])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(params=["repo_root", "elsewhere"])
def cwd(request, tmp_path) -> Path:
    return ROOT if request.param == "repo_root" else tmp_path


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model("tiny")
    with torch.no_grad():  # open the zero-initialised gates so that prompts change the output
        for name, param in model.named_parameters():
            if name.endswith("gate"):
                param.normal_(0, 0.5)
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "model.pt")


def test_the_bundle_has_the_model_zoo_layout():
    names = ["metadata", "inference", "train", "evaluate", "multi_gpu_train"]
    for name in names:
        assert json.loads((CONFIGS / f"{name}.json").read_text()), name
    for path in ["configs/logging.conf", "docs/README.md", "LICENSE", "large_files.yml", "models/model.pt"]:
        assert (ROOT / "bundle" / path).is_file(), path
    assert SHIPPED.stat().st_size <= 25 * 2**20


def test_large_files_yml_holds_the_shipped_weights_md5():
    listed = yaml.safe_load((ROOT / "bundle" / "large_files.yml").read_text())["large_files"]
    (weights,) = [f for f in listed if f["path"] == "models/model.pt"]
    assert weights["hash_type"] == "md5"
    assert weights["hash_val"] == hashlib.md5(SHIPPED.read_bytes()).hexdigest(), "update it with the weights"


def test_metadata_verifies_against_the_vendored_schema_offline(cwd):
    out = monai_bundle(
        "verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(SCHEMA), cwd=cwd
    )
    assert "verified with no error" in out


def test_metadata_missing_a_required_field_is_rejected(tmp_path):
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    del meta["network_data_format"]
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = ["verify_metadata", "--meta_file", str(tmp_path / "metadata.json"), "--filepath", str(SCHEMA)]
    done = subprocess.run([sys.executable, "-m", "monai.bundle", *args], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "network_data_format" in done.stdout + done.stderr


def test_network_input_and_output_match_the_metadata(cwd):
    out = monai_bundle(
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        str(CONFIGS / "metadata.json"),
        "--config_file",
        str(CONFIGS / "inference.json"),
        "--device",
        "cpu",
        cwd=cwd,
    )
    assert "verified with no error" in out


def test_guidance_net_clicks_move_the_mask(random_checkpoint):
    net = load_checkpoint(random_checkpoint, model_class=GuidanceSegmentationNet).eval()
    x = torch.zeros(1, 3, 128, 128)
    x[0, 0] = torch.rand(128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        none = net(x)
        x[0, 1, 30, 40] = 1
        one = net(x)
        x[0, 2, 90, 90] = 1
        two = net(x)
    assert one.shape == (1, 1, 128, 128)
    assert (one - none).abs().max() > 1e-3 and (two - one).abs().max() > 1e-3


def test_torchscript_export_loads_back_and_matches_the_eager_network(cwd, tmp_path, random_checkpoint):
    exported = tmp_path / "model.ts"
    monai_bundle(
        "ckpt_export",
        "network_def",
        "--filepath",
        str(exported),
        "--ckpt_file",
        str(random_checkpoint),
        "--meta_file",
        str(CONFIGS / "metadata.json"),
        "--config_file",
        str(CONFIGS / "inference.json"),
        "--key_in_ckpt",
        "state_dict",
        "--use_trace",
        "True",
        cwd=cwd,
    )
    from monai.data import load_net_with_metadata

    scripted, meta, extra = load_net_with_metadata(str(exported), more_extra_files=["inference.json"])
    assert meta["version"] == json.loads((CONFIGS / "metadata.json").read_text())["version"]
    assert "network_def" in json.loads(extra["inference.json"])
    eager = load_checkpoint(random_checkpoint, model_class=GuidanceSegmentationNet).eval()
    x = torch.zeros(2, 3, 128, 128)
    x[:, 0] = torch.rand(2, 128, 128, generator=torch.Generator().manual_seed(3))
    x[0, 1, 20, 100] = 1  # other clicks than the random trace input
    x[1, 1, 64, 64], x[1, 2, 10, 10] = 1, 1
    with torch.no_grad():
        assert (scripted(x) - eager(x)).abs().max() < 1e-4


def test_inference_config_writes_a_mask_with_the_image_geometry_and_ranked_labels(cwd, tmp_path):
    out_dir = tmp_path / "out"
    stdout = monai_bundle(
        "run", "--config_file", str(CONFIGS / "inference.json"), "--output_dir", str(out_dir), cwd=cwd
    )
    summary = json.loads(stdout.strip().splitlines()[-1])
    probs = [entry["probability"] for entry in summary["labels"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3
    sample = nib.load(ROOT / "bundle" / "docs" / "samples" / "brain_mr_axial.nii.gz")
    mask = nib.load(out_dir / "brain_mr_axial_mask.nii.gz")
    assert mask.shape == sample.shape
    np.testing.assert_allclose(mask.affine, sample.affine, atol=1e-5)
    assert 0 < summary["voxels"] == int(np.asarray(mask.dataobj).sum())
    assert json.loads((out_dir / "brain_mr_axial_labels.json").read_text()) == summary


def test_evaluate_config_writes_held_out_metrics(cwd, tmp_path, phantom_datalist, random_checkpoint):
    out_dir = tmp_path / "eval"
    monai_bundle(
        "run",
        "--config_file",
        str(CONFIGS / "evaluate.json"),
        "--checkpoint",
        str(random_checkpoint),
        "--val_datalists",
        f"['{phantom_datalist}']",
        "--modality_datalist",
        "",  # none: monai.bundle drops overrides whose value is None
        "--samples",
        "8",
        "--output_dir",
        str(out_dir),
        cwd=cwd,
    )
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["displaced"] is True and metrics["checkpoint"] == str(random_checkpoint)
    assert metrics["naming_views"] == 16, "regions named as the CLI and the app name them"
    assert 0 <= metrics["datalist/top1"] <= 1 and 0 < metrics["datalist/top1_chance"] < 1  # set named by the file


def _train_args(phantom_datalist: Path, out_dir: Path, iterations: int) -> list[str]:
    return [
        "--train_datalists",
        f"['{phantom_datalist}']",
        "--train_repeats",
        "[1]",  # one per training datalist
        "--modality_datalist",
        "",  # none: monai.bundle drops overrides whose value is None
        "--iterations",
        str(iterations),
        "--batch_size",
        "2",
        "--num_regions",
        "2",
        "--eval_samples",
        "4",
        "--num_workers",
        "0",
        "--out_dir",
        str(out_dir),
    ]


def test_train_config_runs_two_iterations(tmp_path, phantom_datalist):
    out_dir = tmp_path / "run"
    args = _train_args(phantom_datalist, out_dir, iterations=2)
    monai_bundle("run", "--config_file", str(CONFIGS / "train.json"), *args, cwd=tmp_path)
    state = torch.load(out_dir / "checkpoints" / "checkpoint_2.pt", weights_only=True)
    assert state["trainer"]["iteration"] == 2
    assert load_checkpoint(out_dir / "model.pt").config["vision"] == "tiny"
    assert json.loads((out_dir / "metrics.jsonl").read_text().splitlines()[-1])["iteration"] == 2


@pytest.mark.slow
def test_train_config_runs_from_the_repository_root(tmp_path, phantom_datalist):
    out_dir = tmp_path / "run"
    monai_bundle(
        "run", "--config_file", "bundle/configs/train.json", *_train_args(phantom_datalist, out_dir, 2), cwd=ROOT
    )
    assert torch.load(out_dir / "checkpoints" / "checkpoint_2.pt", weights_only=True)["trainer"]["iteration"] == 2


@pytest.mark.slow
def test_multi_gpu_config_trains_with_torchrun_on_cpu_gloo(tmp_path, phantom_datalist):
    out_dir = tmp_path / "run"
    configs = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'multi_gpu_train.json'}']"
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m")
    args = _train_args(phantom_datalist, out_dir, iterations=3)
    monai_bundle("run", "--config_file", configs, *args, cwd=tmp_path, runner=torchrun)
    state = torch.load(out_dir / "checkpoints" / "checkpoint_3.pt", weights_only=True)
    assert state["trainer"]["iteration"] == 3
    assert max(s["step"] for s in state["optimizer"]["state"].values()) == 3


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("*.json")), ids=lambda p: p.stem)
def test_recipes_merged_over_train_json_give_the_cli_settings(recipe):
    from monai.bundle import ConfigParser

    from medpclip.engines.training import TrainConfig

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(recipe)])
    assert parser.get_parsed_content("train_config") == TrainConfig.from_json(recipe)


def test_train_json_passes_every_training_setting():
    """A setting missing from train.json's ``train_config`` would be dropped without a word when a recipe is merged."""
    from dataclasses import fields

    from medpclip.engines.training import TrainConfig

    passed = json.loads((CONFIGS / "train.json").read_text())["train_config"]
    assert set(passed) - {"_target_"} == {f.name for f in fields(TrainConfig)}
