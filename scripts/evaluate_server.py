"""Interactive liver segmentation on the LiTS case through the MONAI Label server and through the CLI, with the same
clicks: 3D Dice after 1 and 3 clicks from each, side by side. Starts its own server (loopback, a temporary
datastore) and writes a JSON report.

Start slices and clicks follow ``scripts/evaluate_propagation.py``: the liver's largest axial slice and the slices
at 25/50/75 % of its extent; the first click is the liver voxel farthest from its border, the next two the centres
of the largest error of the 2D mask the clicks so far give on that slice. All clicks of a round go to the server
(OHIF's ``points``/``point_labels``) and to ``medpclip segment`` (``--point``/``--negative``) in one request.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import requests
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from monailabel_server import running_server, write_lits_studies  # noqa: E402

from medpclip.atomic import atomic_write_json  # noqa: E402
from medpclip.data.samples import lits_arrays  # noqa: E402
from medpclip.engines.interaction import next_clicks  # noqa: E402
from medpclip.inference import SlicePredictor, load_image, segment_volume  # noqa: E402
from medpclip.networks import load_checkpoint  # noqa: E402
from medpclip.networks.prompts import POSITIVE  # noqa: E402


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def click_rounds(
    predictor: SlicePredictor, volume: torch.Tensor, liver: np.ndarray, k: int, work: Path
) -> list[list[tuple]]:
    """Three rounds of ``(i, j, k, positive)`` clicks on slice ``k``, each round adding one corrective click."""
    clicks: list[tuple] = []
    rounds = []
    pred = torch.zeros(liver.shape[:2], dtype=torch.bool)
    for _ in range(3):
        point, kind = next_clicks(pred[None], torch.from_numpy(liver[..., k])[None], "center")
        clicks.append((*[int(round(v)) for v in point[0].tolist()], k, int(kind[0]) == POSITIVE))
        rounds.append(list(clicks))
        summary = segment_volume(predictor, volume, work / "round.nii.gz", propagate_3d=False, **split(clicks))
        pred = torch.from_numpy(read_mask(summary["mask"])[..., k])
    return rounds


def read_mask(path: str | Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj) > 0


def split(clicks: list[tuple]) -> dict:
    return {
        "points": [list(c[:3]) for c in clicks if c[3]],
        "negatives": [list(c[:3]) for c in clicks if not c[3]],
    }


def by_cli(image: Path, clicks: list[tuple], checkpoint: str, out: Path) -> np.ndarray:
    command = [str(Path(sys.executable).parent / "medpclip"), "segment", str(image), "--out", str(out)]
    for c in clicks:
        command += ["--point" if c[3] else "--negative", ",".join(str(v) for v in c[:3])]
    subprocess.run([*command, "--checkpoint", checkpoint], check=True, capture_output=True)
    return read_mask(out)


def by_server(url: str, clicks: list[tuple], out: Path) -> np.ndarray:
    params = {"points": [list(c[:3]) for c in clicks], "point_labels": [int(c[3]) for c in clicks]}
    query = {"image": "lits_117_ct", "output": "image"}
    body = {"params": json.dumps(params)}
    response = requests.post(f"{url}/infer/medpclip_seg", params=query, data=body, timeout=300)
    response.raise_for_status()
    out.write_bytes(response.content)
    return read_mask(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="bundle/models/model.pt")
    parser.add_argument("--out", default="docs/results/monailabel_lits.json")
    args = parser.parse_args()
    liver = lits_arrays()[1] > 0
    present = np.flatnonzero(liver.any((0, 1)))
    starts = {"largest": int(np.argmax(liver.sum((0, 1))))}
    for q in (25, 50, 75):
        starts[f"extent_{q}"] = int(present[int(round(q / 100 * (len(present) - 1)))])
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        image = write_lits_studies(work / "studies")
        conf = {"checkpoint": str(Path(args.checkpoint).resolve())}
        predictor, volume = SlicePredictor(load_checkpoint(args.checkpoint)), load_image(image)
        with running_server(work / "studies", work / "model", work / "server.log", conf) as server:
            for name, k in tqdm(starts.items(), desc="start slices"):
                rounds = click_rounds(predictor, volume, liver, k, work)
                for n in (1, 3):
                    cli = by_cli(image, rounds[n - 1], args.checkpoint, work / "cli.nii.gz")
                    served = by_server(server.url, rounds[n - 1], work / "server.nii.gz")
                    runs.append(
                        {
                            "start": name,
                            "slice": k,
                            "clicks": n,
                            "click_list": [[*c[:3], int(c[3])] for c in rounds[n - 1]],
                            "dice_3d_cli": round(dice(cli, liver), 4),
                            "dice_3d_server": round(dice(served, liver), 4),
                            "voxels_differing": int((cli != served).sum()),
                        }
                    )
    summary = {"checkpoint": args.checkpoint, "case": "LiTS 117 liver, 128^3, axial propagation", "runs": runs}
    for n in (1, 3):
        for source in ("cli", "server"):
            values = [r[f"dice_3d_{source}"] for r in runs if r["clicks"] == n]
            summary[f"mean_dice_3d_{n}_click{'s' if n > 1 else ''}_{source}"] = round(float(np.mean(values)), 4)
    atomic_write_json(Path(args.out), summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
