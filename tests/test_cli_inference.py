"""``medpclip classify`` / ``medpclip segment`` (ARCHITECTURE.md section 5) and the inference helpers behind them
(:mod:`medpclip.inference.volume`, :mod:`medpclip.inference.pipeline`), on small synthetic images.

The CLI runs in-process through :func:`medpclip.cli.main` with the shipped checkpoint (loaded once per module and
handed out again through a caching ``load_checkpoint``); three subprocess runs prove the console behaviour end to
end. Model outputs on synthetic images are arbitrary, so the tests assert shapes, ranges, sorting, sums, files,
exit codes and messages, never particular predictions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import SHIPPED, needs_checkpoint, write_ct_dicom
from PIL import Image

import medpclip.networks
from medpclip.cli import main
from medpclip.inference import (
    SlicePrompt,
    load_image,
    load_mask,
    mask_prompt,
    propagate,
    resolve_prompt,
    write_mask,
)
from medpclip.inference.volume import PRIOR_LOGIT

SHAPE_2D = (48, 40)
SHAPE_3D = (40, 36, 6)  # the CLI volume: few slices keep propagation quick
VOLUME = (40, 36, 10)  # resolve_prompt's unit tests (no image needed)
AFFINE_2D = np.array([[0.7, 0, 0, -12.0], [0, 0.9, 0, 30.0], [0, 0, 1, 0], [0, 0, 0, 1]])
AFFINE_3D = np.array([[0.8, 0, 0, -16.0], [0, 0.75, 0, 8.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])
CENTER, RADIUS = (20, 18), 10  # the volume's cylinder, in (i, j) of every axial slice
CLICK_3D = "20,18,2"
BOX_3D = f"{CENTER[0] - RADIUS},{CENTER[1] - RADIUS},{CENTER[0] + RADIUS},{CENTER[1] + RADIUS}"
LABELS = ["liver", "spleen", "a bright round lesion"]


# ----------------------------------------------------------------------------------------------------- fixtures


def _disk(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    ii, jj = np.mgrid[: shape[0], : shape[1]]
    return (ii - center[0]) ** 2 + (jj - center[1]) ** 2 < radius**2


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Small synthetic inputs (written once, never modified): a 2D NIfTI, a CT-like volume with a cylinder through
    all its slices, a CT DICOM slice, a grayscale PNG, and region/prior masks of the 2D and 3D image shapes."""
    root = tmp_path_factory.mktemp("cli_inputs")
    rng = np.random.default_rng(0)
    files = {
        "nii2d": "2d.nii.gz",
        "nii3d": "3d.nii.gz",
        "dicom": "ct.dcm",
        "png": "image.png",
        "region3d": "region_3d.nii.gz",
        "region2d": "region_2d.nii.gz",
        "small": "small_mask.nii.gz",
        "empty2d": "empty_2d.nii.gz",
    }
    paths = {key: root / name for key, name in files.items()}

    image = rng.normal(40, 30, SHAPE_2D).astype(np.float32)
    image[15:30, 10:25] += 200
    nib.save(nib.Nifti1Image(image, AFFINE_2D), paths["nii2d"])

    volume = rng.normal(-100, 15, SHAPE_3D).astype(np.float32)  # fat-like background, soft-tissue cylinder (HU)
    volume[_disk(SHAPE_3D[:2], CENTER, RADIUS)] += 160
    nib.save(nib.Nifti1Image(volume, AFFINE_3D), paths["nii3d"])

    hu = np.full((40, 48), -1000.0)  # [Rows, Columns]: LoadImage returns it as [Columns, Rows]
    hu[10:30, 12:36] = 40.0
    write_ct_dicom(paths["dicom"], hu, spacing=(0.7, 0.9), thickness=2.5)

    pixels = (rng.random((SHAPE_2D[1], SHAPE_2D[0])) * 60).astype(np.uint8)  # PIL: [rows, columns] = [H, W]
    pixels[8:30, 12:34] += 150
    Image.fromarray(pixels).save(paths["png"])

    region_3d = np.zeros(SHAPE_3D, np.uint8)
    region_3d[15:25, 12:24, 1] = 1
    region_3d[12:28, 10:26, 4] = 1  # the largest area: slice 4
    region_3d[18:22, 16:20, 5] = 1
    nib.save(nib.Nifti1Image(region_3d, AFFINE_3D), paths["region3d"])
    region_2d = np.zeros(SHAPE_2D, np.uint8)
    region_2d[15:30, 10:25] = 1
    nib.save(nib.Nifti1Image(region_2d, AFFINE_2D), paths["region2d"])
    nib.save(nib.Nifti1Image(np.ones((20, 20), np.uint8), np.eye(4)), paths["small"])
    nib.save(nib.Nifti1Image(np.zeros(SHAPE_2D, np.uint8), AFFINE_2D), paths["empty2d"])
    return paths


@pytest.fixture(scope="module")
def checkpoint_cache() -> dict:
    return {}


@pytest.fixture(autouse=True)
def cached_checkpoints(monkeypatch, checkpoint_cache) -> list[str]:
    """``medpclip.networks.load_checkpoint`` loads each file once per module (the CLI looks it up at call time);
    returns the list of paths the CLI asked for in this test."""
    real = medpclip.networks.load_checkpoint
    asked: list[str] = []

    def load(path, *args, **kwargs):
        asked.append(str(path))
        key = str(Path(path).resolve())
        if key not in checkpoint_cache:
            checkpoint_cache[key] = real(path, *args, **kwargs)
        return checkpoint_cache[key]

    monkeypatch.setattr(medpclip.networks, "load_checkpoint", load)
    return asked


def cli(capsys, *args: object) -> tuple[int, str, str]:
    """Run ``medpclip ARGS`` in-process: (exit code, stdout, stderr); argparse errors exit through SystemExit."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def run_console(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medpclip.cli", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def assert_ranking(ranking: list[dict], labels: list[str]) -> None:
    assert sorted(r["label"] for r in ranking) == sorted(labels)
    probs = [r["probability"] for r in ranking]
    assert all(0 <= p <= 1 for p in probs)
    assert probs == sorted(probs, reverse=True), "labels are ranked by probability"
    assert abs(sum(probs) - 1) < 1e-3


def nonzero_slices(data: np.ndarray, axis: int = 2) -> list[int]:
    return [int(k) for k in np.flatnonzero(np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1).any(1))]


# ------------------------------------------------------------------------------------------- classify: good


@needs_checkpoint
def test_classify_2d_nifti_json_ranks_the_labels_with_the_shipped_checkpoint(capsys, inputs, cached_checkpoints):
    labels = ",".join(LABELS)
    code, out, err = cli(capsys, "classify", inputs["nii2d"], "--labels", labels, "--point", "20,17", "--json")
    assert (code, err) == (0, "")
    assert cached_checkpoints == [str(SHIPPED)], "the bundle's model.pt is the default checkpoint"
    result = json.loads(out)
    assert set(result) == {"labels", "slice"} and result["slice"] is None
    assert_ranking(result["labels"], LABELS)


@needs_checkpoint
@pytest.mark.parametrize(
    "prompt, slice_",
    [(["--point", CLICK_3D, "--negative", "2,2,2"], 2), (["--slice", "1"], 1), ([], SHAPE_3D[2] // 2)],
    ids=["click", "slice-option", "middle"],
)
def test_classify_3d_nifti_reports_the_slice_it_classified(capsys, inputs, prompt, slice_):
    code, out, _ = cli(capsys, "classify", inputs["nii3d"], "--labels", "liver,spleen", *prompt, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["slice"] == slice_
    assert_ranking(result["labels"], ["liver", "spleen"])


@needs_checkpoint
def test_classify_dicom_prints_one_line_per_label_without_json(capsys, inputs):
    ct = load_image(inputs["dicom"])
    assert ct.shape == (1, 48, 40), "LoadImage returns a DICOM slice as [Columns, Rows]"
    assert float(ct[0, 0, 0]) == 0.0 and abs(float(ct[0, 20, 20]) - 0.5) < 1e-3, "the CT tag picks the HU window"
    code, out, err = cli(
        capsys, "classify", inputs["dicom"], "--labels", " liver , spleen,bright disk ", "--box", "5,5,40,30"
    )
    assert (code, err) == (0, "")
    lines = out.strip().splitlines()
    assert len(lines) == 3, "one line per label"
    parsed = [line.split(maxsplit=1) for line in lines]
    assert_ranking(
        [{"probability": float(p), "label": label} for p, label in parsed], ["liver", "spleen", "bright disk"]
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


@needs_checkpoint
def test_classify_png_with_a_click(capsys, inputs):
    code, out, _ = cli(capsys, "classify", inputs["png"], "--labels", "liver,kidney", "--point", "20,15", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["slice"] is None
    assert_ranking(result["labels"], ["liver", "kidney"])


@needs_checkpoint
@pytest.mark.parametrize(
    "image, region, slice_",
    [("nii3d", "region3d", 4), ("nii2d", "region2d", None)],
    ids=["3d", "2d"],
)
def test_classify_a_mask_region(capsys, inputs, image, region, slice_):
    code, out, _ = cli(
        capsys, "classify", inputs[image], "--labels", ",".join(LABELS), "--mask", inputs[region], "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert result["slice"] == slice_, "a volume's region is reported on the slice where it is largest"
    assert_ranking(result["labels"], LABELS)


@needs_checkpoint
def test_classify_with_an_explicit_checkpoint(capsys, inputs, cached_checkpoints):
    code, out, _ = cli(
        capsys, "classify", inputs["nii2d"], "--labels", "liver,spleen", "--checkpoint", SHIPPED, "--json"
    )
    assert code == 0 and cached_checkpoints == [str(SHIPPED)]
    assert_ranking(json.loads(out)["labels"], ["liver", "spleen"])


# -------------------------------------------------------------------------------------------- segment: good


@needs_checkpoint
def test_segment_volume_propagates_and_keeps_the_volume_geometry(capsys, inputs, tmp_path):
    common = ("--point", CLICK_3D, "--box", BOX_3D, "--modality", "CT", "--json")
    code, out, _ = cli(capsys, "segment", inputs["nii3d"], *common, "--out", tmp_path / "prop.nii.gz")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"mask", "shape", "slice", "voxels", "slices"}
    written = nib.load(result["mask"])
    data = np.asarray(written.dataobj)
    assert Path(result["mask"]) == tmp_path / "prop.nii.gz"
    assert written.shape == SHAPE_3D and result["shape"] == list(SHAPE_3D)
    assert np.allclose(written.affine, AFFINE_3D), "the mask overlays the image in world space"
    assert set(np.unique(data)) <= {0, 1}
    assert result["slice"] == 2 and data[..., 2].any()
    assert result["voxels"] == int(data.sum()) > 0
    assert result["slices"] == len(nonzero_slices(data)) >= 1

    code, out, _ = cli(capsys, "segment", inputs["nii3d"], *common, "--out", tmp_path / "one.nii.gz", "--no-propagate")
    assert code == 0
    single = json.loads(out)
    one = np.asarray(nib.load(tmp_path / "one.nii.gz").dataobj)
    assert nonzero_slices(one) == [2], "--no-propagate leaves only the clicked slice"
    assert single["slices"] == 1 and single["voxels"] == int(one.sum()) > 0
    assert np.array_equal(one[..., 2], data[..., 2]), "propagation does not change the prompted slice"
    assert result["voxels"] >= single["voxels"]


@needs_checkpoint
@pytest.mark.parametrize("suffix", [".nii", ".png"])
def test_segment_2d_nifti(capsys, inputs, tmp_path, suffix):
    out_path = tmp_path / f"mask{suffix}"
    code, out, _ = cli(capsys, "segment", inputs["nii2d"], "--point", "20,17", "--out", out_path, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["shape"] == list(SHAPE_2D) and result["slice"] is None and result["slices"] == 1
    mask = load_mask(out_path)
    assert mask.shape == SHAPE_2D and result["voxels"] == int(mask.sum()) > 0
    if suffix == ".nii":
        written = nib.load(out_path)
        assert written.shape == SHAPE_2D and np.allclose(written.affine, AFFINE_2D)


@needs_checkpoint
def test_segment_dicom_writes_nifti_with_its_geometry(capsys, inputs, tmp_path):
    # a click and the box of the fixture's soft-tissue block (columns 12-35, rows 10-29 as LoadImage orders them):
    # a uniform block in air is far from training data, and one click alone gives the shipped model too few voxels
    # to check where the mask lands
    args = ["--point", "20,20", "--box", "12,10,35,29", "--out", tmp_path / "ct.nii.gz"]
    code, out, _ = cli(capsys, "segment", inputs["dicom"], *args)
    assert code == 0 and out.startswith(f"wrote {tmp_path / 'ct.nii.gz'}")
    ct = load_image(inputs["dicom"])
    written = nib.load(tmp_path / "ct.nii.gz")
    assert written.shape == tuple(ct.shape[1:]) == (48, 40)
    assert np.allclose(written.affine[:2, :2], np.asarray(ct.affine)[:2, :2]), "the DICOM's (RAS) pixel spacing"
    mask = np.asarray(written.dataobj) > 0
    assert mask.sum() > 0 and not mask[:12].any() and not mask[36:].any(), "inside the block's columns"
    assert not mask[:, :10].any() and not mask[:, 30:].any(), "inside the block's rows"


@needs_checkpoint
def test_segment_png_to_png_and_nifti(capsys, inputs, tmp_path):
    source = Image.open(inputs["png"])
    for name in ("mask.png", "mask.nii.gz"):
        code, out, _ = cli(capsys, "segment", inputs["png"], "--point", "20,15", "--out", tmp_path / name, "--json")
        assert code == 0
        result = json.loads(out)
        assert result["shape"] == list(SHAPE_2D) and result["slice"] is None
        mask = load_mask(tmp_path / name)
        assert mask.shape == SHAPE_2D and result["voxels"] == int(mask.sum()) > 0
    png = Image.open(tmp_path / "mask.png")
    assert png.size == source.size, "the mask PNG has the image's pixel grid"
    assert set(np.unique(np.asarray(png))) <= {0, 255}
    assert np.array_equal(load_mask(tmp_path / "mask.png"), load_mask(tmp_path / "mask.nii.gz"))


@needs_checkpoint
def test_segment_with_a_prior_mask(capsys, inputs, tmp_path):
    code, out, _ = cli(
        capsys,
        "segment",
        inputs["nii3d"],
        "--mask",
        inputs["region3d"],
        "--no-propagate",
        "--modality",
        "CT",
        "--out",
        tmp_path / "prior.nii.gz",
        "--json",
    )
    assert code == 0
    result = json.loads(out)
    assert result["slice"] == 4, "without a click the prior's largest slice is segmented"
    data = np.asarray(nib.load(tmp_path / "prior.nii.gz").dataobj)
    assert nonzero_slices(data) == [4] and result["voxels"] == int(data.sum()) > 0

    code, out, _ = cli(capsys, "segment", inputs["nii2d"], "--mask", inputs["region2d"], "--out", tmp_path / "p.nii.gz")
    assert code == 0 and (tmp_path / "p.nii.gz").is_file()
    assert nib.load(tmp_path / "p.nii.gz").shape == SHAPE_2D


# --------------------------------------------------------------------------------------------- bad inputs


BAD_INPUTS = {
    "missing image": (["classify", "{tmp}/missing.nii.gz", "--labels", "liver"], "does not exist"),
    "missing image (segment)": (["segment", "{tmp}/missing.nii.gz", "--point", "1,1"], "does not exist"),
    "point outside 2d": (["segment", "{nii2d}", "--point", "48,5"], "outside"),
    "point outside in-plane": (["segment", "{nii3d}", "--point", "5,36,4"], "outside"),
    "point outside slices": (["classify", "{nii3d}", "--labels", "liver", "--point", "5,5,6"], "outside"),
    "negative slice": (["classify", "{nii3d}", "--labels", "liver", "--slice", "-1"], "outside"),
    "reversed box": (["segment", "{nii2d}", "--box", "30,5,10,20"], "reversed"),
    "box outside": (["classify", "{nii2d}", "--labels", "liver", "--box", "0,0,48,10"], "outside"),
    "mask of another shape": (["classify", "{nii2d}", "--labels", "liver", "--mask", "{small}"], "shape"),
    "prior of another shape": (["segment", "{nii3d}", "--mask", "{region2d}"], "shape"),
    "empty mask": (["segment", "{nii2d}", "--mask", "{empty2d}"], "empty"),
    "missing mask": (["classify", "{nii2d}", "--labels", "liver", "--mask", "{tmp}/no.nii.gz"], "does not exist"),
    "unknown format": (["classify", "{tmp}/random.xyz", "--labels", "liver"], "cannot read"),
    "garbage nifti": (["segment", "{tmp}/garbage.nii.gz", "--point", "1,1"], "cannot read"),
    "labels comma": (["classify", "{nii2d}", "--labels", ","], "labels are empty"),
    "labels empty": (["classify", "{nii2d}", "--labels", ""], "labels are empty"),
    "malformed point": (["classify", "{nii2d}", "--labels", "liver", "--point", "3,x"], "--point"),
    "point of 4 numbers": (["segment", "{nii3d}", "--point", "1,2,3,4"], "2 or 3"),
    "2d click on a volume": (["segment", "{nii3d}", "--point", "20,18"], "3 coordinates"),
    "clicks on two slices": (["segment", "{nii3d}", "--point", "20,18,3", "--point", "20,18,5"], "different slices"),
    "click and negative on two slices": (
        ["classify", "{nii3d}", "--labels", "liver", "--point", "20,18,3", "--negative", "2,2,5"],
        "different slices",
    ),
    "click off the asked slice": (["segment", "{nii3d}", "--point", "20,18,3", "--slice", "5"], "slice 5"),
    "box of 3 numbers": (["segment", "{nii2d}", "--box", "1,2,3"], "4 comma-separated numbers"),
    "nothing to segment": (["segment", "{nii3d}"], "nothing to segment"),
    "missing checkpoint": (
        ["classify", "{nii2d}", "--labels", "liver", "--checkpoint", "{tmp}/none.pt"],
        "does not exist",
    ),
    "axis out of range": (["segment", "{nii3d}", "--point", "1,1,1", "--axis", "3"], "--axis"),
    "slice for a 2d image": (["classify", "{nii2d}", "--labels", "liver", "--slice", "2"], "2D image"),
    "mask empty on the clicked slice": (
        ["classify", "{nii3d}", "--labels", "liver", "--mask", "{region3d}", "--point", "20,18,3"],
        "no voxel on slice 3",
    ),
}
BAD_OUTPUTS = {
    "unsupported suffix": ("mask.jpg", ["{nii2d}", "--point", "5,5"], "should end in one of"),
    "no suffix": ("mask", ["{nii2d}", "--point", "5,5"], "should end in one of"),
    "png for a volume": ("mask.png", ["{nii3d}", "--point", "20,18,4"], "2D image"),
}


def _fill(args: list[str], inputs: dict[str, Path], tmp: Path) -> list[str]:
    names = {"tmp": str(tmp)} | {k: str(v) for k, v in inputs.items()}
    return [a.format(**names) for a in args]


def _assert_one_line_error(code: int, out: str, err: str, fragment: str) -> None:
    assert code == 2
    assert out == "", "nothing on stdout on error"
    lines = err.splitlines()
    assert len(lines) == 1, f"stderr should be one line: {err!r}"
    assert lines[0].startswith("medpclip") and "error" in lines[0]
    assert fragment in lines[0], lines[0]


@needs_checkpoint
@pytest.mark.parametrize("args, fragment", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_inputs_are_one_line_exit_2_and_write_nothing(capsys, inputs, tmp_path, args, fragment):
    (tmp_path / "random.xyz").write_bytes(np.random.default_rng(1).bytes(512))
    (tmp_path / "garbage.nii.gz").write_bytes(np.random.default_rng(2).bytes(512))
    before = sorted(tmp_path.rglob("*"))
    args = _fill(args, inputs, tmp_path)
    if args[0] == "segment":
        args += ["--out", str(tmp_path / "out" / "mask.nii.gz")]
    code, out, err = cli(capsys, *args)
    _assert_one_line_error(code, out, err, fragment)
    assert sorted(tmp_path.rglob("*")) == before, "no output file (or temporary file) is left behind"


@needs_checkpoint
@pytest.mark.parametrize("name, args, fragment", list(BAD_OUTPUTS.values()), ids=list(BAD_OUTPUTS))
def test_unsupported_out_files_are_refused(capsys, inputs, tmp_path, name, args, fragment):
    code, out, err = cli(capsys, "segment", *_fill(args, inputs, tmp_path), "--out", tmp_path / name)
    _assert_one_line_error(code, out, err, fragment)
    assert list(tmp_path.iterdir()) == []


def test_segment_needs_out_and_classify_needs_labels(capsys, inputs):
    for args, fragment in [(["segment", inputs["nii2d"], "--point", "1,1"], "--out"), (["classify", "x"], "--labels")]:
        code, out, err = cli(capsys, *args)
        _assert_one_line_error(code, out, err, fragment)


@needs_checkpoint
@pytest.mark.parametrize("point", ["1,1,inf", "1,nan,2"])
def test_non_finite_click_is_a_one_line_error(capsys, inputs, tmp_path, point):
    code, out, err = cli(capsys, "segment", inputs["nii3d"], "--point", point, "--out", tmp_path / "m.nii.gz")
    _assert_one_line_error(code, out, err, "finite")


# ------------------------------------------------------------------------------------------ console (subprocess)


def test_console_argparse_error_is_one_line(tmp_path):
    result = run_console("segment", tmp_path / "image.nii.gz", "--box", "1,2,3", "--out", tmp_path / "m.nii.gz")
    _assert_one_line_error(result.returncode, result.stdout, result.stderr, "4 comma-separated numbers")
    assert list(tmp_path.iterdir()) == []


@needs_checkpoint
def test_console_unreadable_image_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "scan.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    result = run_console("segment", tmp_path / "scan.nii.gz", "--point", "1,1", "--out", tmp_path / "m.nii.gz")
    _assert_one_line_error(result.returncode, result.stdout, result.stderr, "cannot read")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]


@needs_checkpoint
def test_console_segment_png_json(inputs, tmp_path):
    result = run_console("segment", inputs["png"], "--box", "10,6,36,32", "--out", tmp_path / "m.png", "--json")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1, "--json prints one JSON object on one line"
    summary = json.loads(result.stdout)
    assert summary["mask"] == str(tmp_path / "m.png") and summary["shape"] == list(SHAPE_2D)
    assert summary["voxels"] == int(load_mask(tmp_path / "m.png").sum())


# ---------------------------------------------------------------------------------------------- resolve_prompt


def test_resolve_prompt_takes_the_slice_of_the_clicks_along_the_axis():
    prompt = resolve_prompt(VOLUME, points=[(3, 4, 7)], negatives=[(1, 2, 7.2)], box=(0, 0, 5, 6))
    assert prompt.index == 7 and prompt.points == [[3, 4]] and prompt.negatives == [[1, 2]]
    assert prompt.box == [0, 0, 5, 6] and prompt.mask is None
    along_0 = resolve_prompt(VOLUME, points=[(30, 4, 2)], axis=0)
    assert along_0.index == 30 and along_0.points == [[4, 2]]
    along_1 = resolve_prompt(VOLUME, negatives=[(30, 4, 2)], axis=1, slice_index=4)
    assert along_1.index == 4 and along_1.negatives == [[30, 2]] and along_1.points == []


def test_resolve_prompt_slice_from_option_mask_or_middle():
    assert resolve_prompt(VOLUME, slice_index=2).index == 2
    assert resolve_prompt(VOLUME, box=(1, 1, 5, 5)).index == VOLUME[2] // 2
    assert resolve_prompt(VOLUME, axis=1).index == VOLUME[1] // 2
    mask = np.zeros(VOLUME, bool)
    mask[5:7, 5:7, 1] = True  # 4 voxels
    mask[10:13, 10:13, 8] = True  # 9 voxels: the largest slice
    prompt = resolve_prompt(VOLUME, mask=mask)
    assert prompt.index == 8 and np.array_equal(prompt.mask, mask[..., 8])
    assert resolve_prompt(VOLUME, mask=mask, axis=0).index == 10, "largest along axis 0: rows 10-12 hold 3 voxels"
    assert resolve_prompt(VOLUME, mask=mask, slice_index=1).index == 1, "slice_index beats the mask"
    clicked = resolve_prompt(VOLUME, points=[(5, 5, 1)], mask=mask)
    assert clicked.index == 1 and clicked.mask.sum() == 4, "clicks beat the mask; its plane comes along"
    flat = resolve_prompt(SHAPE_2D, points=[(3, 4)], mask=np.ones(SHAPE_2D))
    assert flat.index is None and flat.points == [[3, 4]] and flat.mask.all()


def test_resolve_prompt_result_is_empty_only_without_prompts():
    assert resolve_prompt(SHAPE_2D).is_empty
    assert not resolve_prompt(SHAPE_2D, negatives=[(1, 1)]).is_empty
    assert isinstance(resolve_prompt(VOLUME), SlicePrompt)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"points": [(3, 4)]}, "3 coordinates"),
        ({"negatives": [(3, 4, 5, 6)]}, "3 coordinates"),
        ({"box": (1, 2, 3)}, "4 numbers"),
        ({"mask": np.ones((40, 36))}, "differs"),
        ({"mask": np.zeros(VOLUME)}, "empty"),
        ({"points": [(3, 4, 2), (3, 4, 3)]}, "different slices"),
        ({"points": [(3, 4, 2)], "slice_index": 3}, "asked for"),
        ({"points": [(3, 4, 10)]}, "outside"),
        ({"points": [(3, 4, -1)]}, "outside"),
        ({"slice_index": 10}, "outside"),
        ({"axis": 3}, "axis"),
    ],
)
def test_resolve_prompt_rejects_bad_prompts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resolve_prompt(VOLUME, **kwargs)


# ------------------------------------------------------------------------------------------------ mask_prompt


@pytest.mark.parametrize("shape", ["square", "ring", "corner"])
def test_mask_prompt_clicks_inside_and_boxes_the_mask(shape):
    mask = np.zeros((30, 24), bool)
    if shape == "square":
        mask[5:16, 6:17] = True
    elif shape == "ring":  # the centroid lies outside: the click must not
        mask[_disk(mask.shape, (15, 12), 9) & ~_disk(mask.shape, (15, 12), 5)] = True
    else:
        mask[:6, 20:] = True
    click, box = mask_prompt(mask)
    i, j = (int(v) for v in click)
    assert mask[i, j], "the click lies inside the mask"
    rows, cols = np.nonzero(mask)
    assert box == [rows.min(), cols.min(), rows.max(), cols.max()], "a tight box encloses the mask"
    if shape == "square":
        assert (i, j) == (10, 11), "the deepest voxel of a square is its centre"
    grown_click, grown = mask_prompt(mask, margin=0.5)
    assert grown_click == click
    assert grown[0] <= box[0] and grown[1] <= box[1] and grown[2] >= box[2] and grown[3] >= box[3]
    assert min(grown) >= 0 and grown[2] <= mask.shape[0] - 1 and grown[3] <= mask.shape[1] - 1, "clipped"


def test_mask_prompt_clicks_where_the_whole_slice_distance_transform_peaks():
    """The click comes from the distance transform of the mask's box alone: the same voxel as the whole slice's,
    also for masks of several parts and masks that touch the slice's edge."""
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = np.zeros((40, 32), bool)
        for _ in range(rng.integers(1, 4)):
            i, j, h, w = rng.integers(-5, 40), rng.integers(-5, 32), rng.integers(1, 20), rng.integers(1, 20)
            mask[max(i, 0) : i + h, max(j, 0) : j + w] = True
        if not mask.any():
            continue
        depth = distance_transform_edt(mask)
        assert mask_prompt(mask)[0] == [float(v) for v in np.unravel_index(int(np.argmax(depth)), mask.shape)]


# -------------------------------------------------------------------------------------------------- propagate


class ThresholdPredictor:
    """A stand-in for :class:`SlicePredictor`: segments the voxels brighter than 0.5 and records its prompts."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.slice_: torch.Tensor | None = None

    def set_image(self, slice_: torch.Tensor) -> None:
        assert slice_.ndim == 3 and slice_.shape[0] == 1
        self.slice_ = slice_[0]

    def segment(self, *, points, box, prev_logits) -> torch.Tensor:
        self.calls.append({"points": points, "box": box, "prev": prev_logits, "slice": self.slice_})
        return torch.where(self.slice_ > 0.5, 1.0, -1.0)


def _volume(areas: dict[int, float], depth: int = 12, axis: int = 2) -> torch.Tensor:
    """``[1, 30, 26, depth]`` zeros with a bright disk of radius ``areas[k]`` on slice ``k``, moved to ``axis``."""
    data = np.zeros((depth, 30, 26), np.float32)
    for k, radius in areas.items():
        data[k][_disk((30, 26), (14, 12), radius)] = 1.0
    return torch.from_numpy(np.moveaxis(data, 0, axis).copy())[None]


def _start(volume: torch.Tensor, axis: int, index: int) -> torch.Tensor:
    return torch.where(volume[0].select(axis, index) > 0.5, 1.0, -1.0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_propagate_spreads_a_cylinder_through_every_slice(axis):
    volume = _volume(dict.fromkeys(range(12), 6.0), axis=axis)
    predictor = ThresholdPredictor()
    mask = propagate(predictor, volume, axis, 5, _start(volume, axis, 5))
    assert mask.shape == tuple(volume.shape[1:]) and mask.dtype == bool
    assert np.array_equal(mask, volume[0].numpy() > 0.5), "every slice of the cylinder, nothing else"
    assert len(predictor.calls) == 11, "each other slice is segmented once"


def test_propagate_stops_where_the_object_ends():
    volume = _volume({3: 6.0, 4: 6.0, 5: 6.0}, depth=12)
    predictor = ThresholdPredictor()
    mask = propagate(predictor, volume, 2, 4, _start(volume, 2, 4))
    assert nonzero_slices(mask) == [3, 4, 5]
    assert not mask[..., :3].any() and not mask[..., 6:].any(), "empty far from the object"
    assert len(predictor.calls) == 4, "one empty slice ends each direction: slices 5, 6 up and 3, 2 down"


def test_propagate_stops_when_the_mask_shrinks_and_at_the_volume_border():
    volume = _volume({0: 8.0, 1: 8.0, 2: 8.0, 3: 2.5, 4: 8.0}, depth=6)  # slice 3 holds < 20 % of slice 2
    predictor = ThresholdPredictor()
    mask = propagate(predictor, volume, 2, 1, _start(volume, 2, 1))
    assert nonzero_slices(mask) == [0, 1, 2], "slice 3 shrank below min_ratio, so slice 4 is never reached"
    assert len(predictor.calls) == 3
    assert not propagate(ThresholdPredictor(), volume, 2, 2, torch.full((30, 26), -1.0)).any(), "nothing to carry"


def test_propagate_prompts_each_slice_from_the_previous_mask():
    volume = _volume({k: 4.0 + k for k in range(7)}, depth=7)  # a cone: each slice slightly larger
    predictor = ThresholdPredictor()
    propagate(predictor, volume, 2, 3, _start(volume, 2, 3))
    assert len(predictor.calls) == 6
    for call in predictor.calls:
        previous = call["prev"] > 0
        assert set(call["prev"].unique().tolist()) == {-PRIOR_LOGIT, PRIOR_LOGIT}, "a binary prior of +-8 logits"
        (click,) = call["points"]
        assert previous[int(click[0]), int(click[1])], "the click lies in the previous slice's mask"
        rows, cols = torch.nonzero(previous, as_tuple=True)
        tight = [rows.min().item(), cols.min().item(), rows.max().item(), cols.max().item()]
        assert call["box"] == tight, "the previous mask's tight box"


# ------------------------------------------------------------------------------------------------- write_mask


def test_write_mask_png_round_trip_overlays_the_png(inputs, tmp_path):
    image = load_image(inputs["png"])
    mask = np.asarray(image[0]) > 0.5
    mask[0, 0] = True  # break any symmetry: orientation must be exact
    assert mask.shape == SHAPE_2D and 0 < mask.sum() < mask.size
    written = write_mask(mask, image, tmp_path / "mask.png")
    assert written == tmp_path / "mask.png"
    assert np.array_equal(load_mask(written), mask)
    source = np.asarray(Image.open(inputs["png"]))
    pixels = np.asarray(Image.open(written))
    assert pixels.shape == source.shape and set(np.unique(pixels)) == {0, 255}
    assert np.array_equal(pixels > 0, mask.T), "PNG rows are the image's second index, as the image PNG's are"


def test_write_mask_nifti_keeps_the_affine(inputs, tmp_path):
    volume = load_image(inputs["nii3d"])
    mask = np.zeros(SHAPE_3D, bool)
    mask[3:9, 2:5, 5] = True
    for name in ("m.nii.gz", "m.nii"):
        written = nib.load(write_mask(mask, volume, tmp_path / name))
        assert written.get_data_dtype() == np.uint8 and np.allclose(written.affine, AFFINE_3D)
        assert np.array_equal(np.asarray(written.dataobj) > 0, mask)
    flat = load_image(inputs["nii2d"])
    written = nib.load(write_mask(np.ones(SHAPE_2D, bool), flat, tmp_path / "flat.nii.gz"))
    assert written.shape == SHAPE_2D and np.allclose(written.affine, AFFINE_2D)


@needs_checkpoint
def test_repeated_labels_are_ranked_once(capsys, inputs):
    code, out, _ = cli(capsys, "classify", inputs["nii2d"], "--labels", "liver, spleen,liver", "--json")
    assert code == 0
    labels = [r["label"] for r in json.loads(out)["labels"]]
    assert sorted(labels) == ["liver", "spleen"]
