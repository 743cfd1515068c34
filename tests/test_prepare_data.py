"""scripts/prepare_data.py end to end on the real installed data (slow: about 10 s), without network access."""

from __future__ import annotations

import hashlib
import json
import socket
from itertools import combinations
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare_data.py"
TEMPLATE_SHAPE = (197, 233, 189)
LABEL_LISTS = ("brain_aal3", "brain_hcpex", "liver_lits")


@pytest.fixture(scope="module")
def script():
    return load_script("prepare_data")


def _no_network(*args, **kwargs):
    raise AssertionError("prepare_data tried to open a network connection")


@pytest.fixture(scope="module")
def prepared(script, tmp_path_factory):
    """The prepared folder, made once with sockets disabled (so nothing is downloaded)."""
    out = tmp_path_factory.mktemp("prepared")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _no_network)
        assert script.main(["--out", str(out)]) == 0
    return out


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _array(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_bad_out_is_exit_2(script, tmp_path, capsys):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    assert script.main(["--out", str(not_a_folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "\n" not in err
    assert script.main(["--out", str(not_a_folder / "below")]) == 2


@pytest.mark.slow
def test_volumes_on_template_grid(prepared):
    t1 = nib.load(str(prepared / "brain/mni152_t1.nii.gz"))
    assert t1.shape == TEMPLATE_SHAPE and t1.get_data_dtype() == np.float32
    for name in ("mni152_brain_mask", "mni152_gm_mask", "mni152_wm_mask", "aal3", "hcpex"):
        image = nib.load(str(prepared / f"brain/{name}.nii.gz"))
        assert image.shape == TEMPLATE_SHAPE, name
        assert np.allclose(image.affine, t1.affine), name
    assert nib.load(str(prepared / "brain/aal3.nii.gz")).get_data_dtype() == np.int16
    assert set(np.unique(_array(prepared / "brain/mni152_brain_mask.nii.gz")).tolist()) == {0, 1}


@pytest.mark.slow
@pytest.mark.parametrize("key", ["colin27", "fsl_mni152"])
def test_evaluation_brains_are_other_images_of_the_aal3_anatomy(prepared, key):
    """Colin27 and FSL's MNI152 on the template grid, each brain where nilearn's is, listed with the same slabs and
    labels as the AAL3 datalist under its own name (evaluation only)."""
    t1 = nib.load(str(prepared / "brain/mni152_t1.nii.gz"))
    image = nib.load(str(prepared / f"brain/{key}_t1.nii.gz"))
    assert image.shape == TEMPLATE_SHAPE and np.allclose(image.affine, t1.affine)
    values = _array(prepared / f"brain/{key}_t1.nii.gz")
    assert values.min() == 0 and values.max() == 1
    mask = _array(prepared / "brain/mni152_brain_mask.nii.gz") > 0
    brain = values > 0
    assert 2 * (brain & mask).sum() / (brain.sum() + mask.sum()) > 0.85, "the two brains overlap on one grid"
    inside = mask & brain
    first = np.asanyarray(t1.dataobj)
    assert np.corrcoef(first[inside], values[inside])[0, 1] > 0.5, "the same anatomy, not noise"
    assert np.abs(first[inside] - values[inside]).mean() > 0.03, "another image, not a copy"
    aal3 = _json(prepared / "datalist_brain_aal3.json")
    listed = _json(prepared / f"datalist_brain_aal3_{key}.json")
    assert listed["name"] == f"aal3_{key}" and listed["labels"] == aal3["labels"]
    for split in ("training", "validation"):
        assert listed[split] == [{**item, "image": f"brain/{key}_t1.nii.gz"} for item in aal3[split]]


@pytest.mark.slow
def test_whole_template_trains_every_depth_and_validates_on_colin27(prepared):
    """datalist_brain_aal3_whole.json: the AAL3 datalist's slabs with its validation slabs and gaps given back to
    training, and the same slabs of Colin27 for validation."""
    aal3 = _json(prepared / "datalist_brain_aal3.json")
    whole = _json(prepared / "datalist_brain_aal3_whole.json")
    assert whole["name"] == "aal3_whole" and whole["labels"] == aal3["labels"]
    for axis in range(3):
        split = [i["slices"] for i in aal3["training"] + aal3["validation"] if i["axis"] == axis]
        slabs = [i["slices"] for i in whole["training"] if i["axis"] == axis]
        assert len(slabs) == len(split) == 10
        covered = set().union(*(range(*s) for s in slabs))
        assert covered == set(range(min(s[0] for s in split), max(s[1] for s in split)))  # no gap, no overlap
        assert sum(s[1] - s[0] for s in slabs) == len(covered)
        assert covered > set().union(*(range(*s) for s in split))  # the gaps are trained on too
    assert {i["image"] for i in whole["training"]} == {"brain/mni152_t1.nii.gz"}
    assert whole["validation"] == [{**item, "image": "brain/colin27_t1.nii.gz"} for item in whole["training"]]


@pytest.mark.slow
def test_atlas_labels_match_volumes(prepared):
    for source, minimum in (("aal3", 160), ("hcpex", 400)):
        present = set(np.unique(_array(prepared / f"brain/{source}.nii.gz")).tolist()) - {0}
        assert len(present) >= minimum
        names = _json(prepared / f"brain/{source}_labels.json")
        assert {int(k) for k in names} == present
    assert _json(prepared / "brain/aal3_labels.json")["1"] == "Precentral_L"


@pytest.mark.slow
def test_lits_is_ras_with_axial_axis_last(prepared):
    ct = nib.load(str(prepared / "liver/lits_117_ct.nii.gz"))
    label = _array(prepared / "liver/lits_117_label.nii.gz")
    assert nib.aff2axcodes(ct.affine) == ("R", "A", "S") and ct.shape == label.shape == (128, 128, 128)
    assert set(np.unique(label).tolist()) == {0, 1, 2}
    hu = np.asanyarray(ct.dataobj)
    assert hu.min() < -900 and hu.max() > 1000  # Hounsfield units
    centre = (np.asarray(ct.shape) - 1) / 2
    liver = np.argwhere(label == 1).mean(axis=0)
    bone = np.argwhere(hu > 400).mean(axis=0)
    assert liver[0] > centre[0]  # the liver is on the patient's right (+x in RAS)
    assert bone[1] < liver[1]  # the spine is posterior to the liver (+y is anterior)


@pytest.mark.slow
def test_dicom_examples_decode_and_are_distinct(prepared):
    import pydicom

    files = sorted((prepared / "dicom").glob("*.dcm"))
    assert len(files) >= 8
    frames: dict[str, list[np.ndarray]] = {}
    for path in files:
        ds = pydicom.dcmread(path)
        assert path.name.startswith(f"{ds.Modality}_")
        pixels = ds.pixel_array
        assert min(int(ds.Rows), int(ds.Columns)) >= 32
        frames.setdefault(ds.Modality, []).append(pixels.reshape(-1, *pixels.shape[-2:])[0].astype(float))
    assert {"CT", "MR", "US", "CR"} <= set(frames)
    assert all(len(frames[m]) >= 2 for m in ("CT", "MR", "US", "CR"))
    for images in frames.values():  # no image kept twice in two encodings
        for a, b in combinations(images, 2):
            assert a.shape != b.shape or abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.98


@pytest.mark.slow
def test_datalists_split_by_slab(prepared):
    used: dict[tuple[str, int], dict[str, set[int]]] = {}
    for name in (*LABEL_LISTS, "modalities"):
        data = _json(prepared / f"datalist_{name}.json")
        for split in ("training", "validation"):
            assert data[split], (name, split)
            for item in data[split]:
                assert (prepared / item["image"]).is_file()
                if "slices" not in item:
                    continue
                start, stop = item["slices"]
                shape = nib.load(str(prepared / item["image"])).shape
                assert 0 <= start < stop <= shape[item["axis"]]
                slices = used.setdefault((item["image"], item["axis"]), {"training": set(), "validation": set()})
                slices[split] |= set(range(start, stop))
    gap = _json(prepared / "datalist_brain_aal3.json")["split"]["gap"]
    assert {(image, axis) for image, axis in used} == {
        (image, axis) for image in ("brain/mni152_t1.nii.gz", "liver/lits_117_ct.nii.gz") for axis in range(3)
    }
    for slices in used.values():  # across all datalists of one volume and axis
        train, val = np.array(sorted(slices["training"])), np.array(sorted(slices["validation"]))
        assert np.abs(train[:, None] - val[None, :]).min() > gap


@pytest.mark.slow
def test_label_datalists_list_only_labelled_slices(prepared):
    for name in LABEL_LISTS:
        data = _json(prepared / f"datalist_{name}.json")
        assert data["split"] == {"method": "slab", "n_slabs": 10, "validation_slabs": [3, 7], "gap": 3}
        for item in data["training"] + data["validation"]:
            label = _array(prepared / item["label"])
            start, stop = item["slices"]
            per_slice = np.moveaxis(label, item["axis"], 0)[start:stop].reshape(stop - start, -1)
            assert per_slice.any(axis=1).all(), (name, item)


@pytest.mark.slow
def test_modality_pairs_split_per_modality(prepared):
    data = _json(prepared / "datalist_modalities.json")
    files = {s: [i for i in data[s] if i["image"].startswith("dicom/")] for s in ("training", "validation")}
    for item in files["training"] + files["validation"]:
        assert item["image"] == f"dicom/{item['modality']}_{item['image'].split('_', 1)[1]}" and item["text"]
        frames = int(pydicom.dcmread(prepared / item["image"], stop_before_pixels=True).get("NumberOfFrames", 1) or 1)
        assert item.get("axis") == (2 if frames > 1 else None), "a multi-frame file is sliced at its frames"
    assert any("axis" in i for s in files for i in files[s])  # the packages hold multi-frame files
    names = {s: {i["image"] for i in files[s]} for s in files}
    assert not names["training"] & names["validation"]
    for modality in {i["modality"] for i in files["training"]}:
        count = sum(i["modality"] == modality for s in files for i in files[s])
        if count >= 2:
            assert any(i["modality"] == modality for i in files["validation"])
    volumes = {i["modality"] for s in ("training", "validation") for i in data[s] if "slices" in i}
    assert volumes == {"MR T1", "CT"}


@pytest.mark.slow
def test_manifest_counts_and_hashes(prepared):
    manifest = _json(prepared / "manifest.json")
    counts = manifest["counts"]
    assert counts["images"]["total"] == 2 + len(list((prepared / "dicom").glob("*.dcm")))
    for split in ("training", "validation"):
        assert counts["label_datalists_total"][split]["slices"] > 0
        assert counts["label_datalists_total"][split]["regions"] > 0
    assert all(n > 0 for n in counts["distinct_region_names"].values())
    assert manifest["source_packages"]["nilearn"] != "missing"
    for rel, info in manifest["files"].items():
        assert hashlib.sha256((prepared / rel).read_bytes()).hexdigest() == info["sha256"], rel


@pytest.mark.slow
def test_region_counts_match_slice_by_slice_count(prepared):
    counts = _json(prepared / "manifest.json")["counts"]["label_datalists"]["lits"]
    data = _json(prepared / "datalist_liver_lits.json")
    label = _array(prepared / "liver/lits_117_label.nii.gz")
    for split in ("training", "validation"):
        regions = 0
        for item in data[split]:
            for index in range(*item["slices"]):
                regions += np.count_nonzero(np.unique(np.take(label, index, axis=item["axis"])))
        assert counts[split]["regions"] == regions > 0


@pytest.mark.slow
def test_second_run_rewrites_nothing(script, prepared):
    before = _snapshot(prepared)
    assert script.main(["--out", str(prepared)]) == 0
    assert _snapshot(prepared) == before


@pytest.mark.slow
def test_missing_output_is_rewritten_alone(script, prepared):
    target = prepared / "liver/lits_117_label.nii.gz"
    content = target.read_bytes()
    target.unlink()
    before = _snapshot(prepared)
    assert script.main(["--out", str(prepared)]) == 0
    after = _snapshot(prepared)
    assert target.read_bytes() == content  # reproducible byte for byte
    changed = {rel for rel in after if after[rel] != before.get(rel)}
    assert changed == {"liver/lits_117_label.nii.gz", "manifest.json"}
