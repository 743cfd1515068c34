"""The training recipes in ``configs/``: each one loads, and the four ablation recipes differ from the shipped CPU
recipe in their region mode only (issue 4: the same data, budget and seed), the crop-rate recipe from `crop` in its
vision rate only, the continued CPU recipe from the CPU recipe in its start, rate and seed only, the distilled
one from the continued one in its distillation only, stage three from stage two in its start and seed only, the
whole-template recipe from the shipped one in its brain datalist only, and the whole-template stage from that
recipe in its start, teacher, length, rate and seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medpclip.engines.training import TrainConfig
from medpclip.networks import MODEL_PRESETS
from medpclip.networks.region_encoders import REGION_MODES

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted(CONFIGS.glob("*.json"))
ABLATION_MODES = ("global", "crop", "alpha", "medpclip")


def test_the_recipes_folder_has_the_shipped_and_ablation_recipes():
    names = {path.stem for path in RECIPES}
    assert {"cpu_tiny", "gpu_vitb16_pretrain", *(f"ablation_{mode}" for mode in ABLATION_MODES)} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_every_recipe_loads_with_a_known_model_and_region_mode(path):
    config = TrainConfig.from_json(path)
    assert config.model in MODEL_PRESETS
    assert config.region_mode in REGION_MODES
    assert config.train_datalists and config.iterations > 0
    if config.train_repeats is not None:
        assert len(config.train_repeats) == len(config.train_datalists)


def _settings(name: str) -> dict:
    """A recipe's settings without its description and output folder."""
    recipe = json.loads((CONFIGS / f"{name}.json").read_text())
    return {k: v for k, v in recipe.items() if k not in {"description", "out_dir"}}


@pytest.mark.parametrize("mode", ABLATION_MODES)
def test_ablation_recipes_change_only_the_region_mode(mode):
    assert _settings(f"ablation_{mode}") == {**_settings("cpu_tiny"), "region_mode": mode}


def test_the_crop_rate_recipe_changes_only_the_vision_rate():
    assert _settings("ablation_crop_vision1x") == {**_settings("ablation_crop"), "vision_lr_scale": 1.0}


def test_the_whole_template_recipe_changes_only_the_brain_datalist():
    whole = "data/prepared/datalist_brain_aal3_whole.json"
    shipped = _settings("cpu_tiny_one_schedule")
    lists = {key: [whole, *shipped[key][1:]] for key in ("train_datalists", "val_datalists")}
    assert shipped["train_datalists"][0] == "data/prepared/datalist_brain_aal3.json"
    assert _settings("cpu_tiny_whole_template") == {**shipped, **lists}


def test_the_whole_template_stage_continues_the_shipped_recipe_on_every_depth():
    stage = {"init_checkpoint": "runs/cpu_tiny_one_schedule/model.pt", "distill_weight": 20.0, "seed": 1}
    shorter = {"iterations": 1500, "eval_every": 500, "lr": 0.0005}
    assert json.loads((CONFIGS / "cpu_tiny_one_schedule.json").read_text())["out_dir"] == "runs/cpu_tiny_one_schedule"
    assert _settings("cpu_tiny_whole_stage") == {**_settings("cpu_tiny_whole_template"), **stage, **shorter}


@pytest.mark.parametrize("name", ["displace", "modality_augment", "mr_augment", "modality_file_share"])
@pytest.mark.parametrize("value", [True, -0.1, 1.5, "0.5"])
def test_a_chance_setting_outside_0_to_1_is_refused_with_its_name(tmp_path, name, value):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"train_datalists": ["x.json"], name: value}))
    with pytest.raises(ValueError, match=f"{name} must be a number from 0 to 1"):
        TrainConfig.from_json(recipe)


def test_the_continued_recipe_starts_from_the_cpu_recipe_output_and_changes_only_rate_and_seed():
    first, second = _settings("cpu_tiny"), _settings("cpu_tiny_continue")
    output = json.loads((CONFIGS / "cpu_tiny.json").read_text())["out_dir"]
    assert second["init_checkpoint"] == f"{output}/model.pt", "stage two trains what stage one wrote"
    assert second["lr"] < first["lr"] and second["seed"] != first["seed"]
    assert second == {**first, "init_checkpoint": second["init_checkpoint"], "lr": second["lr"], "seed": second["seed"]}


def test_the_distilled_recipe_differs_from_the_continued_one_in_its_distillation_only():
    plain, distilled = _settings("cpu_tiny_continue"), _settings("cpu_tiny_continue_distill")
    assert distilled["distill_weight"] > 0
    assert distilled == {**plain, "distill_weight": distilled["distill_weight"]}


def test_stage_three_repeats_stage_two_from_its_output_with_other_draws():
    two, three = _settings("cpu_tiny_continue_distill"), _settings("cpu_tiny_stage3")
    output = json.loads((CONFIGS / "cpu_tiny_continue_distill.json").read_text())["out_dir"]
    assert three["init_checkpoint"] == f"{output}/model.pt", "stage three trains, and is held to, what stage two wrote"
    assert three["seed"] not in {two["seed"], _settings("cpu_tiny")["seed"]}
    assert three == {**two, "init_checkpoint": three["init_checkpoint"], "seed": three["seed"]}
