"""The MONAI Label server under concurrent clients, and fine-tuning from a saved label (slow: run by make e2e)."""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
from helpers import load_script
from monailabel.client import MONAILabelClient

from medpclip.data.samples import lits_arrays
from medpclip.networks import load_checkpoint

pytestmark = pytest.mark.slow


def test_forty_requests_from_eight_clients_succeed_and_info_stays_responsive(monailabel_server):
    report = load_script("load_test").run_load(
        monailabel_server.url, "lits_117_ct", [128, 128, 128], requests_total=40, clients=8, pid=monailabel_server.pid
    )
    assert report["ok"] == 40 and report["failed"] == 0, report["failures"]
    assert report["info_polls"] >= 3
    assert report["info_max_s"] < 1.0, report


def test_a_saved_label_fine_tunes_the_served_model(monailabel_server, tmp_path):
    client = MONAILabelClient(monailabel_server.url, tmpdir=str(tmp_path))
    label = tmp_path / "liver.nii.gz"
    ct_file = monailabel_server.studies / "lits_117_ct.nii.gz"
    nib.save(nib.Nifti1Image((lits_arrays()[1] > 0).astype(np.uint8), nib.load(ct_file).affine), label)
    client.save_label("lits_117_ct", str(label), tag="final")
    assert client.datastore()["objects"]["lits_117_ct"]["labels"]["final"]
    client.train_start("medpclip", {"max_iterations": 2, "batch_size": 2, "num_regions": 2})
    deadline = time.monotonic() + 300
    status = client.train_status()
    while status["status"] in ("SUBMITTED", "RUNNING") and time.monotonic() < deadline:
        time.sleep(2)
        status = client.train_status()
    assert status["status"] == "DONE", status
    finetuned = monailabel_server.model_dir / "medpclip.pt"
    trained = load_checkpoint(finetuned)
    shipped = load_checkpoint(Path(__file__).parents[1] / "bundle/models/model.pt")
    changed = [k for k, v in trained.state_dict().items() if not np.array_equal(v, shipped.state_dict()[k])]
    assert changed, "two iterations at lr 1e-4 left every weight unchanged"
    stats = client.info()["train_stats"]["medpclip"]
    assert stats["iterations"] == 2 and stats["images"] == 1
    response = requests.post(
        f"{monailabel_server.url}/infer/medpclip_seg",
        params={"image": "lits_117_ct", "output": "json"},
        data={"params": '{"points": [[103, 53, 97]], "propagate": false}'},
        timeout=120,
    )
    assert response.status_code == 200 and response.json()["voxels"] > 0  # served by the fine-tuned weights
