"""Bad images, masks, prompts, labels and output paths through the Python API (``load_image``, ``load_mask``,
``classify_file``, ``segment_file``, ``SlicePredictor``) and the CLI (``medpclip classify|segment`` in-process, and
two runs as a real process). Every case must end in one clear line naming the problem (CLI: exit code 2, one stderr
line, empty stdout; API: ``ValueError`` / ``FileNotFoundError``), never a traceback, and leave no output file and
no temporary file behind. The cases ``tests/test_cli_inference.py`` already runs through the CLI (missing files,
clicks and boxes outside, masks of another shape, malformed numbers, ...) are not repeated here.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from battery import (
    SHAPE_2D,
    assert_no_temporaries,
    assert_one_line_error,
    files_under,
    nifti_header_only,
    png_bytes,
    png_header_only,
    write_nifti,
)
from helpers import needs_checkpoint, write_ct_dicom

import medpclip.atomic
import medpclip.inference.images
from medpclip.inference import (
    SlicePredictor,
    classify_file,
    classify_volume,
    load_image,
    load_mask,
    segment_and_classify,
    segment_file,
)
from medpclip.inference.images import MAX_VOXELS

# ------------------------------------------------------------------------------------------------ bad images


def _truncated(path: Path, source: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _negative_dim(path: Path, good: dict) -> Path:
    header = nib.Nifti1Header()
    header.set_data_shape((10, 10))
    block = bytearray(header.binaryblock)
    block[42:44] = (-10).to_bytes(2, "little", signed=True)  # dim[1]
    path.write_bytes(bytes(block) + b"\0" * 404)
    return path


def _dicom_without_pixels(path: Path, good: dict) -> Path:
    return write_ct_dicom(path, pixels=False)


def _nan(path: Path, good: dict, value: float = np.nan, dtype: type = np.float32) -> Path:
    data = np.random.default_rng(0).random(SHAPE_2D).astype(dtype)
    data[5, 5] = value
    return write_nifti(path, data)


def _rgb_nifti(path: Path, good: dict) -> Path:
    rgb = np.zeros(SHAPE_2D, [("R", "u1"), ("G", "u1"), ("B", "u1")])
    return write_nifti(path, rgb)


def _empty_dicom_folder(path: Path, good: dict) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("no DICOM here")
    return path


def _folder_named_like_an_image(path: Path, good: dict) -> Path:
    path.mkdir()
    return path


# name: (file name, builder(path, good) -> path, fragment of the message)
BAD_IMAGES = {
    "truncated nii": (
        "t.nii",
        lambda p, g: _truncated(p, write_nifti(p.with_name("full.nii"), np.ones((30, 30, 8)))),
        "cannot read",
    ),
    "truncated nii.gz": ("t.nii.gz", lambda p, g: _truncated(p, g["nii3d"]), "cannot read"),
    "nifti header with a negative size": ("neg.nii", _negative_dim, "cannot read"),
    "empty file": ("empty.nii.gz", lambda p, g: p.write_bytes(b""), "cannot read"),
    "truncated png": (
        "t.png",
        lambda p, g: p.write_bytes(png_bytes(np.full((40, 40), 200, np.uint8))[:60]),
        "cannot read",
    ),
    "png signature only": ("sig.png", lambda p, g: p.write_bytes(b"\x89PNG\r\n\x1a\n"), "cannot read"),
    "truncated dicom": ("t.dcm", lambda p, g: _truncated(p, g["dicom"], 0.7), "cannot read"),
    "dicom preamble then garbage": (
        "g.dcm",
        lambda p, g: p.write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(1).bytes(300)),
        "cannot read",
    ),
    "dicom without pixel data": ("nopix.dcm", _dicom_without_pixels, "cannot read"),
    "folder without dicoms": ("series", _empty_dicom_folder, "cannot read"),
    "folder named like an image": ("folder.nii.gz", _folder_named_like_an_image, "cannot read"),
    "4d time series": ("4d.nii.gz", lambda p, g: write_nifti(p, np.ones((12, 12, 6, 3), np.float32)), "4 dimensions"),
    "one voxel": ("one.nii.gz", lambda p, g: write_nifti(p, np.ones((1, 1, 1), np.float32)), "at least 2 voxels"),
    "a line of voxels": ("line.nii.gz", lambda p, g: write_nifti(p, np.ones((1, 40), np.float32)), "at least 2 voxels"),
    "nan intensity": ("nan.nii.gz", _nan, "NaN or infinite"),
    "infinite intensity": ("inf.nii.gz", lambda p, g: _nan(p, g, np.inf), "NaN or infinite"),
    "beyond float32": ("big.nii.gz", lambda p, g: _nan(p, g, 1e300, np.float64), "NaN or infinite"),
    "complex voxels": (
        "complex.nii.gz",
        lambda p, g: write_nifti(p, (np.ones(SHAPE_2D) + 1j).astype(np.complex64)),
        "complex voxels",
    ),
    "bool png (a mask given as the image)": (
        "bool.png",
        lambda p, g: p.write_bytes(png_bytes(np.random.default_rng(0).random(SHAPE_2D) > 0.5)),
        "binary",
    ),
    "rgb nifti": ("rgb.nii.gz", _rgb_nifti, "cannot read"),
    "huge nifti header": ("huge.nii", lambda p, g: nifti_header_only(p, (4096, 4096, 4096)), "more than the limit"),
    "huge dicom header": (
        "huge.dcm",
        lambda p, g: write_ct_dicom(p, shape=(65535, 65535), pixels=False),
        "more than the limit",
    ),
    "png decompression bomb": ("bomb.png", lambda p, g: png_header_only(p, 40000, 40000), "cannot read"),
}


def _build(case: str, tmp_path: Path, good: dict) -> Path:
    name, builder, _ = BAD_IMAGES[case]
    path = tmp_path / "inputs" / name
    path.parent.mkdir(exist_ok=True)
    built = builder(path, good)
    return built if isinstance(built, Path) else path


@pytest.fixture
def no_voxel_reads(monkeypatch) -> list[str]:
    """Record every ``LoadImage`` call of :mod:`medpclip.inference.images` (a huge file must not reach one)."""
    real = medpclip.inference.images.LoadImage
    calls: list[str] = []

    class LoadImageSpy(real):
        def __call__(self, filename, *args, **kwargs):
            calls.append(str(filename))
            return super().__call__(filename, *args, **kwargs)

    monkeypatch.setattr(medpclip.inference.images, "LoadImage", LoadImageSpy)
    return calls


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_through_the_api_is_one_clear_value_error(case, tmp_path, good, no_voxel_reads):
    path = _build(case, tmp_path, good)
    with pytest.raises(ValueError) as raised:
        load_image(path)
    message = str(raised.value)
    assert BAD_IMAGES[case][2] in message and str(path) in message, message
    assert len(message.splitlines()) == 1, message
    if "limit" in BAD_IMAGES[case][2]:
        assert no_voxel_reads == [], "a file over the limit is refused from its header, before its voxels are read"
        assert f"{MAX_VOXELS:,}" in message


@needs_checkpoint
@pytest.mark.parametrize("command", ["classify", "segment"])
@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_through_the_cli_is_one_line_exit_2_and_writes_nothing(cli, command, case, tmp_path, good):
    path = _build(case, tmp_path, good)
    before = files_under(tmp_path)
    if command == "classify":
        args = ["classify", path, "--labels", "liver,spleen"]
    else:
        args = ["segment", path, "--point", "1,1", "--out", tmp_path / "out" / "mask.nii.gz"]
    assert_one_line_error(*cli(*args), BAD_IMAGES[case][2])
    assert files_under(tmp_path) == before, "no output file (or temporary file) is left behind"


RAMP = np.tile(np.arange(0, 200, 10, dtype=np.uint8), (30, 1))  # 30 rows x 20 columns, brighter to the right


@pytest.mark.parametrize(
    "channels, mode",
    [([RAMP, RAMP, RAMP], "RGB"), ([RAMP, RAMP, RAMP, 255 - RAMP], "RGBA"), ([RAMP, 190 - RAMP], "LA")],
    ids=["rgb", "rgba", "grey+alpha"],
)
def test_colour_pictures_are_still_read_as_grey(tmp_path, channels, mode):
    """The battery's refusals must not hit legitimate colour images: RGB(A) becomes luminance, grey + alpha its
    grey channel (averaged with this alpha it would be flat)."""
    path = tmp_path / "picture.png"
    path.write_bytes(png_bytes(np.dstack(channels), mode))
    image = load_image(path, modality="XR")
    assert image.shape == (1, 20, 30), "MONAI's PIL reader: [C, W, H]"
    row = image[0, :, 0]
    assert (row[1:] > row[:-1]).all(), "the ramp survives"


def test_a_4d_file_with_one_frame_is_a_volume(tmp_path):
    path = write_nifti(tmp_path / "one_frame.nii.gz", np.random.default_rng(0).random((12, 10, 6, 1)).astype("f4"))
    assert load_image(path).shape == (1, 12, 10, 6)


# ------------------------------------------------------------------------------------------------- bad masks


BAD_MASKS = {
    "4d mask": ("m4d.nii.gz", lambda p: write_nifti(p, np.ones((*SHAPE_2D, 2, 2), np.uint8)), "4 dimensions"),
    "complex mask": ("mc.nii.gz", lambda p: write_nifti(p, np.ones(SHAPE_2D, np.complex64)), "complex voxels"),
    "rgb mask": (
        "rgb.png",
        lambda p: p.write_bytes(png_bytes(np.zeros((SHAPE_2D[1], SHAPE_2D[0], 3), np.uint8))),
        "channels",
    ),
    "nan mask": ("nan.nii.gz", lambda p: write_nifti(p, np.full(SHAPE_2D, np.nan, np.float32)), "NaN"),
    "huge mask header": ("huge.nii", lambda p: nifti_header_only(p, (30000, 30000)), "more than the limit"),
    "truncated mask": ("t.nii.gz", lambda p: p.write_bytes(b"\x1f\x8b\x08\x00"), "cannot read"),
}


def _mask(case: str, tmp_path: Path) -> Path:
    name, builder, _ = BAD_MASKS[case]
    path = tmp_path / "masks" / name
    path.parent.mkdir(exist_ok=True)
    built = builder(path)
    return built if isinstance(built, Path) else path


@pytest.mark.parametrize("case", list(BAD_MASKS))
def test_bad_mask_through_the_api(case, tmp_path):
    with pytest.raises(ValueError, match=BAD_MASKS[case][2]) as raised:
        load_mask(_mask(case, tmp_path))
    assert "mask" in str(raised.value) or "cannot read" in str(raised.value)


@needs_checkpoint
@pytest.mark.parametrize("command", ["classify", "segment"])
@pytest.mark.parametrize("case", list(BAD_MASKS))
def test_bad_mask_through_the_cli(cli, command, case, tmp_path, good):
    mask = _mask(case, tmp_path)
    before = files_under(tmp_path)
    if command == "classify":
        args = ["classify", good["nii2d"], "--labels", "liver", "--mask", mask]
    else:
        args = ["segment", good["nii2d"], "--mask", mask, "--out", tmp_path / "out.nii.gz"]
    assert_one_line_error(*cli(*args), BAD_MASKS[case][2])
    assert files_under(tmp_path) == before


def test_api_mask_of_another_shape_and_empty_prior_write_nothing(tiny, good, tmp_path):
    small = write_nifti(tmp_path / "small.nii.gz", np.ones((8, 8), np.uint8))
    empty = write_nifti(tmp_path / "empty.nii.gz", np.zeros(SHAPE_2D, np.uint8))
    with pytest.raises(ValueError, match="differs from the image shape"):
        classify_file(tiny, good["nii2d"], ["liver"], mask=small)
    with pytest.raises(ValueError, match="empty"):
        segment_file(tiny, good["nii2d"], tmp_path / "out.nii.gz", prior=empty)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.nii.gz", "small.nii.gz"]


# ---------------------------------------------------------------------------------------- prompts and slices


@pytest.mark.parametrize(
    "prompt, message",
    [
        ({"points": [(3, 4, 5)]}, "2 coordinates"),
        ({"negatives": [(3,)]}, "2 coordinates"),
        ({"points": [(3, 4)], "box": (0, 0, float("nan"), 5)}, "NaN"),
        ({"points": [(-0.6, 4)]}, "outside"),
        ({"mask": torch.ones(5, 5)}, "shape"),
    ],
    ids=["3 coords on a slice", "1 coord", "nan box", "negative click", "mask of another shape"],
)
def test_slice_predictor_refuses_bad_prompts(tiny, prompt, message):
    predictor = SlicePredictor(tiny)
    predictor.set_image(torch.rand(1, 20, 24))
    with pytest.raises(ValueError, match=message):
        predictor.segment(**prompt)


@pytest.mark.parametrize(
    "slice_, message",
    [
        (torch.rand(1, 0, 24), r"\[1, H, W\]"),
        (torch.rand(3, 20, 24), r"\[1, H, W\]"),
        (torch.rand(1, 20, 24, dtype=torch.complex64), "complex"),
        (torch.full((1, 20, 24), float("inf")), "NaN or infinite"),
    ],
    ids=["empty", "3 channels", "complex", "infinite"],
)
def test_slice_predictor_refuses_bad_slices(tiny, slice_, message):
    with pytest.raises(ValueError, match=message):
        SlicePredictor(tiny).set_image(slice_)


# ------------------------------------------------------------------------------------------------------ labels

ODD_LABELS = [
    "肝臓",  # Japanese
    "ｶﾝｿﾞｳ",  # half-width katakana
    "כבד",  # right to left
    "e\u0301dème",  # combining accent
    "\u202eright-to-left override\u200b",
    "tab\tand\nnewline",
    "🫁 lung",
    "liver " * 5000,  # 30,000 characters: the tokenizer truncates
]


def test_odd_unicode_and_very_long_labels_are_ranked(tiny, good):
    predictor = SlicePredictor(tiny)
    ranking = classify_volume(predictor, load_image(good["nii2d"]), ODD_LABELS)["labels"]
    assert sorted(r["label"] for r in ranking) == sorted(label.strip() for label in ODD_LABELS)
    assert abs(sum(r["probability"] for r in ranking) - 1) < 1e-3


@needs_checkpoint
def test_cli_ranks_odd_unicode_labels(cli, good):
    labels = ",".join(label for label in ODD_LABELS if "\n" not in label)
    code, out, err = cli("classify", good["nii2d"], "--labels", labels, "--json")
    assert (code, err) == (0, "")
    ranked = [r["label"] for r in json.loads(out)["labels"]]
    assert "肝臓" in ranked and "🫁 lung" in ranked and len(ranked) == len(ODD_LABELS) - 1


def test_labels_that_are_not_text_are_refused(tiny, good):
    with pytest.raises(ValueError, match="list of strings"):
        classify_file(tiny, good["nii2d"], "liver")
    with pytest.raises(ValueError, match="not valid Unicode"):
        classify_file(tiny, good["nii2d"], ["liver", "caf\udce9"])  # undecodable bytes of a command line


@needs_checkpoint
def test_cli_label_with_undecodable_bytes_is_one_line(cli, good):
    assert_one_line_error(*cli("classify", good["nii2d"], "--labels", "liver,caf\udce9"), "not valid Unicode")


# ------------------------------------------------------------------------------------------------------ outputs


@needs_checkpoint
def test_out_that_is_the_input_image_or_prior_is_refused_and_they_stay_intact(cli, good, tmp_path):
    image = tmp_path / "scan.nii.gz"
    image.write_bytes(good["nii2d"].read_bytes())
    prior = tmp_path / "prior.nii.gz"
    prior.write_bytes(good["region2d"].read_bytes())
    before = {p: p.read_bytes() for p in (image, prior)}
    assert_one_line_error(*cli("segment", image, "--point", "5,5", "--out", image), "is the input file")
    alias = tmp_path / "sub" / ".." / "prior.nii.gz"  # the same file by another path
    (tmp_path / "sub").mkdir()
    assert_one_line_error(*cli("segment", image, "--mask", prior, "--out", alias), "is the input file")
    assert {p: p.read_bytes() for p in (image, prior)} == before
    assert_no_temporaries(tmp_path)


@needs_checkpoint
@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_out_that_cannot_be_a_file_is_refused_before_any_work(cli, good, tmp_path, where):
    (tmp_path / "notes.txt").write_text("a file")
    (tmp_path / "masks.nii.gz").mkdir()
    out = tmp_path / "notes.txt" / "mask.nii.gz" if where == "under a file" else tmp_path / "masks.nii.gz"
    before = files_under(tmp_path)
    fragment = "is a file, not a folder" if where == "under a file" else "is a folder"
    assert_one_line_error(*cli("segment", good["nii2d"], "--point", "5,5", "--out", out), fragment)
    assert files_under(tmp_path) == before


def _disk_full_after(monkeypatch, fraction: float = 0.5) -> None:
    """Writes through :mod:`medpclip.atomic` put part of the data on disk, then fail with ENOSPC."""

    def write_some_then_fail(path, data):
        def write(f):
            f.write(data[: int(len(data) * fraction)])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return medpclip.atomic._atomic(path, write)

    monkeypatch.setattr(medpclip.inference.pipeline, "atomic_write_bytes", write_some_then_fail)


@needs_checkpoint
def test_disk_full_while_writing_the_mask_leaves_no_partial_file(cli, good, tmp_path, monkeypatch):
    _disk_full_after(monkeypatch)
    out = tmp_path / "out" / "mask.nii.gz"
    line = assert_one_line_error(*cli("segment", good["nii2d"], "--point", "5,5", "--out", out), "No space left")
    assert str(out) in line, "the message names the file, not a temporary one"
    assert not out.exists()
    assert_no_temporaries(tmp_path)


def test_bundle_inference_keeps_no_half_result(tiny, good, tmp_path, monkeypatch):
    """The bundle writes the mask, then the labels JSON: when the JSON cannot be written the mask goes too."""

    def fail(path, obj):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(medpclip.inference.pipeline, "atomic_write_json", fail)
    with pytest.raises(ValueError, match="No space left"):
        segment_and_classify(tiny, good["nii2d"], tmp_path / "out", points=[(12, 12)], labels=["liver"])
    assert list((tmp_path / "out").iterdir()) == []


def test_bundle_outputs_stay_in_the_output_folder_whatever_the_image_name(tiny, good, tmp_path):
    sub = tmp_path / "in" / "sub"
    sub.mkdir(parents=True)
    hidden = tmp_path / "in" / ".hidden.nii.gz"
    hidden.write_bytes(good["nii2d"].read_bytes())
    summary = segment_and_classify(tiny, sub / ".." / ".hidden.nii.gz", tmp_path / "out", labels=["liver"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["image_labels.json", "image_mask.nii.gz"]
    assert Path(summary["mask"]).parent == tmp_path / "out"
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == [".hidden.nii.gz", "sub"]


# ------------------------------------------------------------------------------------- real processes (console)


@pytest.mark.slow
def test_console_refuses_a_huge_image_from_its_header_within_a_memory_limit(tmp_path):
    """A real process under a 6 GiB address-space limit: the 256 GiB the header declares are never allocated."""
    nifti_header_only(tmp_path / "huge.nii", (4096, 4096, 4096))
    command = [sys.executable, "-m", "medpclip.cli", "classify", "huge.nii", "--labels", "liver"]
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))"
    wrapper = [sys.executable, "-c", f"{limit}; import os, sys; os.execv(sys.argv[1], sys.argv[1:])", *command]
    done = subprocess.run(wrapper, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert_one_line_error(done.returncode, done.stdout, done.stderr, "more than the limit")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.nii"]


@pytest.mark.slow
@needs_checkpoint
def test_console_handles_undecodable_file_names(tmp_path, good):
    """File names are bytes on Linux: a name that is not UTF-8 is read, written and printed as it is."""
    name = b"scan_\xe9.nii.gz"
    (tmp_path / os.fsdecode(name)).write_bytes(good["nii2d"].read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "medpclip.cli", "segment", name, "--point", "5,5", "--out", b"m\xe9.nii.gz"],
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"wrote m\xe9.nii.gz"), "the name is printed with its original bytes"
    assert os.fsencode(sorted(os.listdir(tmp_path))[0]) == b"m\xe9.nii.gz"
    bad = subprocess.run(
        [sys.executable, "-m", "medpclip.cli", "classify", b"missing_\xe9.nii.gz", "--labels", b"caf\xe9"],
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert_one_line_error(bad.returncode, bad.stdout.decode(), bad.stderr.decode("utf-8", "replace"), "does not exist")
