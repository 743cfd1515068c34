"""The ``medpclip`` console script: demo output and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medpclip.cli", *args], capture_output=True, text=True, timeout=300)


def test_demo_writes_summary_and_overlay(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["weights"].endswith("bundle/models/model.pt"), "the shipped checkpoint is the default"
    assert summary["shapes"]["region_embeddings"] == [1, 1, 256]
    ranking = summary["prompts"]["click on tumour"]["labels"]
    assert abs(sum(r["probability"] for r in ranking) - 1) < 1e-3
    assert (out / "overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_checkpoint_is_one_line_exit_2(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path / "x"), "--checkpoint", str(tmp_path / "missing.pt"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr
    assert not (tmp_path / "x").exists(), "a failed run must not leave a half-written output folder"
