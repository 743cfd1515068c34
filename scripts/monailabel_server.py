"""Start our MONAI Label app as a real server process on a free loopback port, for tests and evaluation scripts.

with running_server(studies_folder, model_dir=...) as server:
    requests.get(f"{server.url}/info/")
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import requests

APP = Path(__file__).resolve().parents[1] / "monailabel_app"


class Server(NamedTuple):
    url: str
    pid: int
    studies: Path
    model_dir: Path
    log: Path


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port(avoid: Collection[int] = ()) -> int:
    """A loopback port nothing listens on, not in ``avoid``, drawn below the kernel's ephemeral range.

    A port from ``bind(("127.0.0.1", 0))`` lies in that range, so between choosing it and our server binding it the
    kernel may hand it to another ``bind(0)`` (even a second call of this function) or to an outgoing connection;
    a port below the range only an explicit listener can take.
    """
    low = int(EPHEMERAL_RANGE.read_text().split()[0]) if EPHEMERAL_RANGE.exists() else 32768
    draw = random.SystemRandom()
    for _ in range(200):
        port = draw.randrange(10000, max(low, 10001))
        if port in avoid:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port found between 10000 and {low}")


@contextmanager
def running_server(
    studies: Path, model_dir: Path, log: Path, conf: dict[str, str] | None = None, timeout: float = 180.0
) -> Iterator[Server]:
    """``monailabel start_server --app monailabel_app --studies <studies> --conf models medpclip`` (plus ``conf``),
    waited for until ``/info/`` answers, and stopped (its whole process group) on exit. Its temporary files go to a
    folder removed on exit: ``monailabel start_server`` leaves its logging configuration in ``TMPDIR`` every start."""
    port = free_port()
    venv_bin = str(Path(sys.executable).parent)  # `monailabel` runs the `python` it finds on PATH
    scratch = tempfile.TemporaryDirectory(prefix="monailabel-")
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ["PATH"], "TMPDIR": scratch.name}
    command = [f"{venv_bin}/monailabel", "start_server", "--app", str(APP), "--studies", str(studies)]
    for key, value in {"models": "medpclip", "model_dir": str(model_dir), **(conf or {})}.items():
        command += ["--conf", key, value]
    command += ["--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"monailabel exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"monailabel did not answer /info/ in {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/info/", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        yield Server(url, process.pid, studies, model_dir, log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        scratch.cleanup()


def write_lits_studies(studies: Path) -> Path:
    """The LiTS CT volume as ``<studies>/lits_117_ct.nii.gz`` (HU, int16, its affine); returns the file."""
    import nibabel as nib
    import numpy as np

    from medpclip.data.samples import lits_affine, lits_arrays

    studies.mkdir(parents=True, exist_ok=True)
    ct, _ = lits_arrays()
    path = studies / "lits_117_ct.nii.gz"
    nib.save(nib.Nifti1Image(ct.astype(np.int16), lits_affine(ct.shape)), path)
    return path
