"""``medpclip bench``: the JSON contract of ARCHITECTURE.md section 6 (figures are measured, never asserted)."""

from __future__ import annotations

import json
import time

import pytest

from medpclip import bench, cli
from medpclip.inference.views import NAMING_VIEWS

RATIO_KEYS = {
    "first_click_vs_clip_encode",
    "refine_click_vs_clip_encode",
    "prompts32_vs_prompt1",
    "train_step_vs_clip",
    "sam_vitb_vs_first_click",
}


def _cheap_references():
    """Reference stand-ins with known relative costs, so the tests check the ratio wiring, not SAM's speed."""
    return [
        ("sam_vitb_encoder", lambda: time.sleep(0.02), 1),
        ("sam_vitb_decoder", lambda: time.sleep(0.001), 0),
        ("open_clip_vitb16_encode", lambda: time.sleep(0.01), 0),
        ("matmul_2048", lambda: time.sleep(0.001), 0),
    ]


@pytest.fixture(scope="module")
def result():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "_reference_steps", _cheap_references)
        return bench.run_bench("tiny", repeats=1)


def test_bench_result_has_the_contract_ratios(result):
    assert RATIO_KEYS <= set(result["ratios"])
    ms, ratios = result["ms"], result["ratios"]
    assert ratios["first_click_vs_clip_encode"] == pytest.approx(
        ms["first_click"] / ms["open_clip_vitb16_encode"], 1e-2
    )
    assert ratios["train_step_vs_clip"] == pytest.approx(ms["train_step_medpclip"] / ms["train_step_plain_clip"], 1e-2)
    assert set(result["targets"]) == RATIO_KEYS
    for key, target in result["targets"].items():
        bound = float(target["target"].split()[1])
        assert target["met"] == (ratios[key] <= bound if target["target"].startswith("<=") else ratios[key] >= bound)
    assert result["settings"] == {"preset": "tiny", "threads": 2, "repeats": 1, "slice": [512, 512]}
    assert result["peak_rss_mib"] > 0 and result["throughput"]["zero_shot_images_per_s"] > 0
    assert all(v > 0 for v in ms.values())
    assert {"name_click_1_view", f"name_click_{NAMING_VIEWS}_views"} <= set(ms), "naming as the app does, and alone"


def test_bench_table_names_each_target_and_verdict(result):
    table = bench.format_table(result)
    for key, target in result["targets"].items():
        line = next(line for line in table.splitlines() if line.strip().startswith(key))
        assert f"target {target['target']}" in line and line.endswith("met")
        assert ("NOT met" in line) == (not target["met"])
    assert "peak RSS" in table


def test_cli_bench_json_prints_one_object(result, monkeypatch, capsys):
    monkeypatch.setattr(bench, "run_bench", lambda preset, **kwargs: {**result, "asked": [preset, kwargs]})
    assert cli.main(["bench", "--preset", "tiny", "--threads", "1", "--no-references", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["asked"] == ["tiny", {"threads": 1, "repeats": 5, "references": False}]


def test_bench_rejects_bad_settings(capsys):
    assert cli.main(["bench", "--repeats", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
