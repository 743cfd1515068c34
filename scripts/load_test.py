"""Load on a running MedP-CLIP MONAI Label server: N inference requests from C concurrent clients (loopback only,
bounded in count and time), while a watcher polls ``/info/``. Prints (and with ``--out`` writes) a JSON report:
failures, status codes, p50/p95 latency, throughput, ``/info/`` latency under load, and the server's RSS before
and after and its peak (``--pid``).

    python scripts/load_test.py --server http://127.0.0.1:8000 --image lits_117_ct --requests 200 --clients 8
    python scripts/load_test.py --start --requests 200 --clients 8   # its own server on the LiTS volume

Requests alternate between a single-slice click segmentation (a different click each time), a zero-shot
classification and a region labelling, on the given image.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import requests

MAX_REQUESTS = 2000


def request_for(n: int, shape: list[int]) -> tuple[str, dict]:
    """The ``n``-th request: ``(model, params)``; clicks move around the middle of the volume."""
    i, j, k = (s // 2 + (n * 7) % max(s // 4, 1) - s // 8 for s in shape)
    kind = n % 3
    if kind == 0:
        return "medpclip_seg", {"points": [[i, j, k]], "point_labels": [1], "label_prompt": [1], "propagate": False}
    if kind == 1:
        return "medpclip_classify", {"labels": ["CT", "MR", "X-ray", "ultrasound"], "slice_index": k}
    return "medpclip_region", {"foreground": [[i, j, k]], "labels": ["liver", "spleen", "kidney", "lung", "bone"]}


def rss_mib(pid: int | None, field: str = "VmRSS") -> float | None:
    """Resident memory (``VmRSS``) or its peak (``VmHWM``) of a local process, in MiB."""
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def run_load(
    server: str,
    image: str,
    shape: list[int],
    requests_total: int = 40,
    clients: int = 8,
    max_seconds: float = 600.0,
    pid: int | None = None,
) -> dict:
    """Send the requests and return the report (see the module docstring)."""
    if urlparse(server).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load tests run on loopback only, not {server}.")
    if not 1 <= requests_total <= MAX_REQUESTS:
        raise ValueError(f"--requests should be 1..{MAX_REQUESTS}.")
    deadline = time.monotonic() + max_seconds
    results: list[tuple[int, float, str]] = []
    info_latency: list[float] = []
    done = threading.Event()

    def one(n: int) -> None:
        if time.monotonic() > deadline:
            results.append((0, 0.0, "skipped: time limit"))
            return
        model, params = request_for(n, shape)
        started = time.perf_counter()
        try:
            response = requests.post(
                f"{server}/infer/{model}",
                params={"image": image, "output": "json"},
                data={"params": json.dumps(params)},
                timeout=max(deadline - time.monotonic(), 1.0),
            )
            status, detail = response.status_code, "" if response.ok else response.text[:200]
        except requests.RequestException as err:
            status, detail = 0, f"{type(err).__name__}: {err}"[:200]
        results.append((status, time.perf_counter() - started, detail))

    def watch_info() -> None:
        while not done.is_set():
            started = time.perf_counter()
            try:
                requests.get(f"{server}/info/", timeout=10).raise_for_status()
                info_latency.append(time.perf_counter() - started)
            except requests.RequestException:
                info_latency.append(float("inf"))
            done.wait(0.25)

    rss_before = rss_mib(pid)
    watcher = threading.Thread(target=watch_info, daemon=True)
    watcher.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(requests_total)))
    wall = time.perf_counter() - started
    done.set()
    watcher.join()
    latencies = np.array([seconds for status, seconds, _ in results if status == 200])
    failures = [detail or f"HTTP {status}" for status, _, detail in results if status != 200]
    statuses: dict[str, int] = {}
    for status, _, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "requests": requests_total,
        "clients": clients,
        "ok": int(len(latencies)),
        "failed": len(failures),
        "failures": failures[:10],
        "statuses": statuses,
        "wall_s": round(wall, 2),
        "throughput_per_s": round(len(latencies) / wall, 3),
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 3) if len(latencies) else None,
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 3) if len(latencies) else None,
        "latency_max_s": round(float(latencies.max()), 3) if len(latencies) else None,
        "info_polls": len(info_latency),
        "info_p95_s": round(float(np.percentile(info_latency, 95)), 3) if info_latency else None,
        "info_max_s": round(max(info_latency), 3) if info_latency else None,
        "server_rss_mib_before": rss_before,
        "server_rss_mib_after": rss_mib(pid),
        "server_peak_rss_mib": rss_mib(pid, "VmHWM"),
    }


def _rounds(args: argparse.Namespace, server: str, image: str, shape: list[int], pid: int | None) -> dict:
    reports = [
        run_load(server, image, shape, args.requests, args.clients, args.max_seconds, pid) for _ in range(args.rounds)
    ]
    if len(reports) == 1:
        return reports[0]
    return {"rounds": reports, "server_rss_mib_after_each_round": [r["server_rss_mib_after"] for r in reports]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--start", action="store_true", help="start a server of our app on the LiTS volume and use it")
    parser.add_argument("--image", default="lits_117_ct", help="an image id of the server's datastore")
    parser.add_argument("--shape", default="128,128,128", help="the image's shape i,j,k (clicks stay inside)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--pid", type=int, default=None, help="the server's process id, for its memory")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the load; RSS after each round shows a leak")
    parser.add_argument("--out", default=None, help="also write the report to this JSON file")
    parser.add_argument(
        "--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"), help="app option of --start's server"
    )
    args = parser.parse_args()
    shape = [int(s) for s in args.shape.split(",")]
    if args.start:
        import sys
        import tempfile

        sys.path.insert(0, str(Path(__file__).parent))
        from monailabel_server import running_server, write_lits_studies

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_lits_studies(root / "studies")
            with running_server(root / "studies", root / "model", root / "server.log", dict(args.conf)) as server:
                report = _rounds(args, server.url, "lits_117_ct", shape, server.pid)
    else:
        report = _rounds(args, args.server, args.image, shape, args.pid)
    text = json.dumps(report, indent=1)
    if args.out:
        from medpclip.atomic import atomic_write_json

        atomic_write_json(Path(args.out), report)
    print(text)


if __name__ == "__main__":
    main()
