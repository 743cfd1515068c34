"""The MONAI Label app through a real server process and MONAI Label's own client: what OHIF and 3D Slicer send,
what they get back, and bad requests answered with 4xx JSON while the server serves on."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
from helpers import load_script
from monailabel.client import MONAILabelClient

from medpclip.data.samples import lits_arrays
from medpclip.inference import SlicePredictor, load_image, segment_volume
from medpclip.networks import load_checkpoint

LIVER_CLICK = [103, 53, 97]  # on the liver of the LiTS volume, axial slice 97
CT = "lits_117_ct"


@pytest.fixture(scope="module")
def client(monailabel_server, tmp_path_factory) -> MONAILabelClient:
    return MONAILabelClient(monailabel_server.url, tmpdir=str(tmp_path_factory.mktemp("client")))


def post_infer(server, model: str, image: str, params: object) -> requests.Response:
    body = params if isinstance(params, str) else json.dumps(params)
    return requests.post(
        f"{server.url}/infer/{model}", params={"image": image, "output": "json"}, data={"params": body}, timeout=120
    )


def infer_json(client: MONAILabelClient, model: str, image: str, params: dict, **kwargs: object) -> dict:
    """The JSON of a result without a label image (the client hands it over as bytes)."""
    _, body = client.infer(model, image, params, **kwargs)
    return json.loads(body) if isinstance(body, bytes | str) else body


def read_mask(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def test_info_offers_models_that_ohif_and_slicer_know(client):
    models = client.info()["models"]
    assert {name: m["type"] for name, m in models.items()} == {
        "medpclip_seg": "vista3d",
        "medpclip_deepgrow": "deepgrow",
        "medpclip_classify": "classification",
        "medpclip_region": "classification",
    }
    assert models["medpclip_seg"]["labels"]["liver"] == 1
    assert "CT" in models["medpclip_classify"]["labels"]


def test_server_listens_on_loopback_only(monailabel_server):
    port = int(monailabel_server.url.rsplit(":", 1)[1])
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
            listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, not 0.0.0.0 (monailabel start_server's own default)


def test_ohif_point_prompt_segments_the_volume_exactly_as_the_cli(client, monailabel_server, tmp_path):
    params = {"points": [LIVER_CLICK], "point_labels": [1], "label_prompt": [2]}
    result, summary = client.infer("medpclip_seg", CT, params)
    mask = read_mask(result)
    assert summary["label_names"] == {"liver tumour": 2}
    assert set(np.unique(mask)) == {0, 2}  # voxels carry the prompted label's index
    assert summary["slice"] == LIVER_CLICK[2] and summary["slices"] > 1  # propagated from slice 97
    image = monailabel_server.studies / f"{CT}.nii.gz"
    predictor = SlicePredictor(load_checkpoint(Path(__file__).parents[1] / "bundle/models/model.pt"))
    cli = segment_volume(predictor, load_image(image), tmp_path / "cli.nii.gz", points=[LIVER_CLICK])
    assert summary["voxels"] == cli["voxels"]
    assert np.array_equal(mask > 0, read_mask(cli["mask"]) > 0)
    liver = lits_arrays()[1] > 0
    assert (mask > 0)[liver].sum() > 0.8 * (mask > 0).sum()  # its voxels are liver: not noise, not a flipped volume


def test_ohif_gets_the_label_as_nrrd_when_it_asks(client):
    import nrrd

    params = {"points": [LIVER_CLICK], "propagate": False}
    nifti, _ = client.infer("medpclip_seg", CT, params)
    ohif_params = {"result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False}
    result, _ = client.infer("medpclip_seg", CT, {**params, **ohif_params})
    data, header = nrrd.read(result)
    assert header["encoding"] == "raw" and data.dtype == np.uint8
    assert np.array_equal(data, read_mask(nifti))  # same voxel order, first index fastest


def test_app_labels_are_a_list_for_ohif(client):
    info = client.info()
    assert info["labels"] == list(info["models"]["medpclip_seg"]["labels"])  # OHIF's panel appends to this list


def test_slicer_clicks_give_the_same_mask_as_ohif_clicks(client):
    negative = [60, 40, 97]
    ohif, _ = client.infer(
        "medpclip_seg", CT, {"points": [LIVER_CLICK, negative], "point_labels": [1, 0], "propagate": False}
    )
    slicer, summary = client.infer(
        "medpclip_deepgrow", CT, {"foreground": [LIVER_CLICK], "background": [negative], "propagate": False}
    )
    assert summary["slices"] == 1
    assert np.array_equal(read_mask(ohif), read_mask(slicer))


def test_clicks_on_other_slices_are_left_out_and_reported(client):
    _, summary = client.infer("medpclip_seg", CT, {"points": [[90, 60, 40], LIVER_CLICK], "propagate": False})
    assert summary["slice"] == LIVER_CLICK[2]
    assert summary["dropped_clicks"] == 1


def test_zero_shot_classification_ranks_free_text(client):
    result = infer_json(client, "medpclip_classify", CT, {"labels": "MR, CT ,X-ray"})
    labels = [r["label"] for r in result["labels"]]
    assert sorted(labels) == ["CT", "MR", "X-ray"]
    probabilities = [r["probability"] for r in result["labels"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    assert labels[0] == "CT"
    default = infer_json(client, "medpclip_classify", "brain_mr", {})  # 2D image, the configured vocabulary
    assert len(default["labels"]) == 5 and default["slice"] is None


def test_region_labelling_from_a_click_and_from_an_uploaded_mask(client, tmp_path):
    from_click = infer_json(client, "medpclip_region", CT, {"foreground": [LIVER_CLICK]})
    assert len(from_click["labels"]) == 10  # top 10 of the knowledge base's anatomy
    assert from_click["labels"][0]["probability"] >= from_click["labels"][-1]["probability"]
    reference = (lits_arrays()[1] > 0).astype(np.uint8)
    mask_file = tmp_path / "liver.nii.gz"
    nib.save(nib.Nifti1Image(reference, np.eye(4)), mask_file)
    labels = {"labels": ["liver", "spleen", "lung"]}
    from_mask = infer_json(client, "medpclip_region", CT, labels, label_in=str(mask_file))
    assert [r["label"] for r in from_mask["labels"]][0] == "liver"
    assert len(from_mask["labels"]) == 3


def test_an_uploaded_image_is_served(client, tmp_path):
    from medpclip import bundle_dir

    upload = tmp_path / "uploaded_mr.nii.gz"
    upload.write_bytes((Path(bundle_dir()) / "docs/samples/brain_mr_axial.nii.gz").read_bytes())
    client.upload_image(str(upload), image_id="uploaded_mr")
    assert "uploaded_mr" in client.datastore()["objects"]
    mask, summary = client.infer("medpclip_deepgrow", "uploaded_mr", {"foreground": [[67, 113]]})
    assert summary["slice"] is None and summary["voxels"] > 0  # a 2D image: no slice, no propagation
    assert read_mask(mask).shape[:2] == tuple(nib.load(upload).shape[:2])


BAD_REQUESTS = {
    "unknown image id": ("medpclip_seg", "no_such_image", {"points": [LIVER_CLICK]}, 404, "unknown image"),
    "image id that is a path": ("medpclip_seg", "/etc/passwd", {"points": [LIVER_CLICK]}, 404, "not paths"),
    "image id that climbs": ("medpclip_classify", "../studies", {}, 404, "not paths"),
    "unknown model": ("no_such_model", CT, {}, 404, "unknown model"),
    "malformed params": ("medpclip_seg", CT, "{'points': [1, 2", 400, "not valid JSON"),
    "params not an object": ("medpclip_seg", CT, "[1, 2]", 400, "JSON object"),
    "click outside the volume": ("medpclip_seg", CT, {"points": [[500, 10, 10]]}, 422, "outside"),
    "click on no slice": ("medpclip_seg", CT, {"points": [[10, 10, 400]]}, 422, "outside"),
    "click with two coordinates": ("medpclip_seg", CT, {"points": [[10, 10]]}, 422, "3 numbers"),
    "non-finite click": ("medpclip_deepgrow", CT, '{"foreground": [[NaN, 1, 1]]}', 422, "list of numbers"),
    "point_labels too long": ("medpclip_seg", CT, {"points": [LIVER_CLICK], "point_labels": [1, 0]}, 422, "has"),
    "unknown label_prompt": ("medpclip_seg", CT, {"points": [LIVER_CLICK], "label_prompt": [99]}, 422, "label_prompt"),
    "no click and no box": ("medpclip_seg", CT, {"label_prompt": [1]}, 422, "foreground point or a box"),
    "box of three numbers": ("medpclip_seg", CT, {"points": [LIVER_CLICK], "box": [1, 2, 3]}, 422, "4 numbers"),
    "labels empty": ("medpclip_classify", CT, {"labels": []}, 422, "labels are empty"),
    "labels only commas": ("medpclip_classify", CT, {"labels": " , ,"}, 422, "labels are empty"),
    "labels not strings": ("medpclip_classify", CT, {"labels": [1, 2]}, 422, "list of strings"),
    "axis out of range": ("medpclip_classify", CT, {"axis": 3}, 422, "axis"),
    "slice outside the volume": ("medpclip_classify", CT, {"slice_index": 999}, 422, "outside"),
    "region without a region": ("medpclip_region", CT, {}, 422, "needs a region"),
    "top_k zero": ("medpclip_region", CT, {"foreground": [LIVER_CLICK], "top_k": 0}, 422, "top_k"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_requests_get_4xx_json_and_the_server_serves_on(monailabel_server, case):
    model, image, params, status, reason = BAD_REQUESTS[case]
    response = post_infer(monailabel_server, model, image, params)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and reason in detail and "\n" not in detail
    good = post_infer(monailabel_server, "medpclip_classify", "brain_mr", {"labels": ["MR", "CT"]})
    assert good.status_code == 200 and good.json()["labels"][0]["label"] in ("MR", "CT")


@pytest.mark.parametrize("tag", ["../../escaped", "/tmp/medpclip_escaped", "final/../../escaped"])
def test_labels_cannot_be_written_outside_the_datastore(monailabel_server, tmp_path, tag):
    label = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), label)
    with label.open("rb") as f:
        response = requests.put(
            f"{monailabel_server.url}/datastore/label",
            params={"image": CT, "tag": tag},
            files={"label": ("label.nii.gz", f)},
            timeout=60,
        )
    assert response.status_code == 400 and "not a plain name" in response.json()["detail"]
    root = monailabel_server.studies.parent
    assert not list(root.rglob("escaped*")) and not Path("/tmp/medpclip_escaped").exists()
    saved = post_infer(
        monailabel_server,
        "medpclip_seg",
        CT,
        {"points": [LIVER_CLICK], "propagate": False, "save_label": True, "label_tag": tag},
    )
    assert saved.status_code == 400 and not list(root.rglob("escaped*"))


def test_uploads_cannot_name_paths(monailabel_server, tmp_path):
    image = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), image)
    with image.open("rb") as f:
        response = requests.put(
            f"{monailabel_server.url}/datastore/image",
            params={"image": "../outside"},
            files={"file": ("x.nii.gz", f)},
            timeout=60,
        )
    assert response.status_code == 400 and "not a plain name" in response.json()["detail"]
    assert not list(monailabel_server.studies.parent.rglob("outside*"))


def test_other_endpoints_answer_unknown_ids_with_json(monailabel_server):
    response = requests.get(f"{monailabel_server.url}/datastore/image", params={"image": "nope"}, timeout=30)
    assert response.status_code == 404
    assert "detail" in response.json()


def test_free_port_is_bindable_below_the_ephemeral_range_and_avoids_the_given_ports():
    server = load_script("monailabel_server")
    low = int(server.EPHEMERAL_RANGE.read_text().split()[0])
    first = server.free_port()
    second = server.free_port(avoid={first})
    assert 10000 <= first < low and 10000 <= second < low and second != first
    with socket.socket() as held:  # a port someone listens on is never handed out
        held.bind(("127.0.0.1", second))
        held.listen()
        everything_else = set(range(10000, low)) - {second}
        with pytest.raises(RuntimeError, match="no free loopback port"):
            server.free_port(avoid=everything_else)
