"""Fixtures for the end-to-end tests against a real stack: Orthanc (DICOMweb) + MONAI Label (serving OHIF) +
headless Chromium, all on loopback, started by ``scripts/start_stack.sh`` and stopped at the end of the session
even when a test fails.

The stack runs in ``.stack/e2e`` (PID files, logs, Orthanc storage; wiped at the start of a session) on free
ports, so it does not collide with a stack started by ``make stack`` on the default ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import load_script

ROOT = Path(__file__).resolve().parents[2]
STACK_SCRIPT = ROOT / "scripts" / "start_stack.sh"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
free_port = load_script("monailabel_server").free_port


class Stack:
    """Ports, URLs and the run folder of the test stack; ``run(...)`` calls ``scripts/start_stack.sh``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.orthanc_port = int(os.environ.get("E2E_ORTHANC_PORT") or free_port())
        self.monailabel_port = int(os.environ.get("E2E_MONAILABEL_PORT") or free_port(avoid={self.orthanc_port}))
        self.orthanc_url = f"http://127.0.0.1:{self.orthanc_port}"
        self.monailabel_url = f"http://127.0.0.1:{self.monailabel_port}"
        self.timings: dict[str, float] = {}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            STACK_DIR=str(self.folder),
            ORTHANC_PORT=str(self.orthanc_port),
            MONAILABEL_PORT=str(self.monailabel_port),
            PYTHON=sys.executable,
        )
        return env

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(STACK_SCRIPT), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.folder / name
        if not path.exists():
            return f"(no {path})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _require_packages(stack: Stack) -> None:
    """Install the Debian packages when root; skip when they are missing and we cannot install them."""
    result = stack.run("install")
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["install failed"]
        if os.geteuid() != 0:
            pytest.skip(f"end-to-end stack unavailable: {reason[0]}")
        pytest.fail(f"scripts/start_stack.sh install failed: {result.stderr.strip()}")


@pytest.fixture(scope="session")
def stack_studies():
    return load_script("stack_studies")


@pytest.fixture(scope="session")
def stack():
    """A stopped stack in a fresh ``.stack/e2e``; everything it starts is stopped at the end of the session."""
    folder = Path(os.environ.get("E2E_STACK_DIR") or ROOT / ".stack" / "e2e")
    stack = Stack(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stack.run("stop", timeout=120)  # left over from an interrupted session
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        yield stack
    finally:
        stack.run("stop", timeout=120)
        timings = ", ".join(f"{k} {v:.1f} s" for k, v in stack.timings.items())
        print(f"\n[e2e] stack timings: {timings}")


@pytest.fixture(scope="session")
def orthanc(stack):
    """Orthanc on loopback with the demo studies uploaded (``scripts/start_stack.sh start --no-monailabel``)."""
    _require_packages(stack)
    start = time.monotonic()
    result = stack.run("start", "--no-monailabel", timeout=300)
    stack.timings["orthanc start + upload"] = time.monotonic() - start
    if result.returncode != 0:
        pytest.fail(f"Orthanc did not start: {result.stderr.strip()}\n--- orthanc.log\n{stack.log_tail('orthanc.log')}")
    return stack


@pytest.fixture(scope="session")
def monailabel(orthanc):
    """MONAI Label (``monailabel_app``, ``--conf models medpclip``) on loopback, reading Orthanc's DICOMweb."""
    if not (ROOT / "monailabel_app" / "main.py").exists():
        pytest.fail("monailabel_app/main.py is missing")
    start = time.monotonic()
    result = orthanc.run("start", timeout=900)
    orthanc.timings["monailabel start"] = time.monotonic() - start
    if result.returncode != 0:
        pytest.fail(
            f"MONAI Label did not start: {result.stderr.strip()}\n--- monailabel.log\n"
            f"{orthanc.log_tail('monailabel.log')}"
        )
    return orthanc


@pytest.fixture
def chrome(stack):
    """Headless Debian Chromium driven by Selenium through /usr/bin/chromedriver (Selenium Manager never runs: the
    driver and browser paths are explicit)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the 'test' extra")
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing (scripts/start_stack.sh install)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-dev-shm-usage",
        # cornerstone3D's volume viewports need WebGL 2; without a GPU Chromium renders it with SwiftShader, which
        # newer Chromium only allows on request (trusted local content here)
        "--enable-unsafe-swiftshader",
        "--window-size=1600,1000",
        f"--user-data-dir={stack.folder / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # chromedriver (and the Chromium it starts) in a session of its own whose PID file `start_stack.sh stop` reads:
    # nothing outlives an interrupted test run
    service = Service(
        executable_path=CHROMEDRIVER,
        log_output=str(stack.folder / "chromedriver.log"),
        popen_kw={"start_new_session": True},
    )
    driver = webdriver.Chrome(service=service, options=options)
    pid_file = stack.folder / "chromedriver.pid"
    pid_file.write_text(str(service.process.pid))
    try:
        yield driver
    finally:
        driver.quit()
        pid_file.unlink(missing_ok=True)
