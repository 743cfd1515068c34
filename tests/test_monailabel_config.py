"""The app's ``--conf`` options, read without starting a server (``monailabel_app/lib/configs/medpclip.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "monailabel_app"


@pytest.fixture
def config_class(monkeypatch):
    monkeypatch.syspath_prepend(str(APP))  # the app's own package is called ``lib``, as MONAI Label apps do
    for name in [m for m in sys.modules if m == "lib" or m.startswith("lib.")]:
        monkeypatch.delitem(sys.modules, name)
    from lib.configs.medpclip import MedPCLIPConfig

    return MedPCLIPConfig


def test_naming_views_reach_the_predictors(config_class, tmp_path):
    from medpclip.inference.views import NAMING_VIEWS

    default, fast = config_class(), config_class()
    default.init("medpclip", str(tmp_path), {}, None)
    fast.init("medpclip", str(tmp_path), {"naming_views": "1"}, None)
    assert default.service.naming_views == NAMING_VIEWS and fast.service.naming_views == 1
    with fast.service.predictor("CT") as predictor:
        assert predictor.naming_views == 1


@pytest.mark.parametrize("value", ["0", "-3", "many", "2.5"])
def test_a_bad_naming_views_stops_the_app_with_one_clear_line(config_class, tmp_path, value):
    with pytest.raises(ValueError, match="naming_views should be a whole number of at least 1") as error:
        config_class().init("medpclip", str(tmp_path), {"naming_views": value}, None)
    assert "\n" not in str(error.value)
