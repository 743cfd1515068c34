"""The MONAI Label server launcher of the scripts and tests (``scripts/monailabel_server.py``), without a server."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

from helpers import load_script


def test_the_server_keeps_its_temporary_files_in_a_folder_removed_when_it_stops(tmp_path, monkeypatch):
    """``monailabel start_server`` writes its logging configuration to ``TMPDIR`` and never removes it."""
    launcher = load_script("monailabel_server")
    started = {}

    class FakeServerProcess:
        pid, returncode = 12345, None

        def __init__(self, command, env, **_):
            started["command"], started["tmp"] = command, Path(env["TMPDIR"])
            (started["tmp"] / "logging.json").write_text("{}")  # what start_server leaves behind

        def poll(self):
            return None

        def wait(self, timeout=None):
            return 0

    stopped = []
    monkeypatch.setattr(launcher.subprocess, "Popen", FakeServerProcess)
    monkeypatch.setattr(launcher.requests, "get", lambda url, timeout: SimpleNamespace(ok=True))
    monkeypatch.setattr(launcher.os, "killpg", lambda pid, sig: stopped.append(pid))
    with launcher.running_server(tmp_path / "studies", tmp_path / "model", tmp_path / "server.log") as server:
        assert server.url.startswith("http://127.0.0.1:") and "start_server" in started["command"]
        assert (started["tmp"] / "logging.json").is_file()
        assert started["tmp"].parent == Path(tempfile.gettempdir()), "a folder of its own, not TMPDIR itself"
    assert stopped == [12345] and not started["tmp"].exists()
