"""DICOM studies for the local Orthanc + MONAI Label + OHIF stack (``scripts/start_stack.sh``), written by our own code.

* the LiTS liver CT case (``medpclip.data.samples``; LiTS licence: non-commercial, tests and demo only) as a
  multi-file CT series, one file per axial slice, with ImagePositionPatient / ImageOrientationPatient /
  PixelSpacing / SliceThickness taken from its RAS affine (converted to DICOM's LPS patient coordinates) and int16
  pixels whose RescaleSlope / RescaleIntercept give back the HU values exactly;
* pydicom's own real CT and MR test files (``CT_small.dcm``, ``MR_small.dcm``), uploaded as they are.

UIDs are deterministic (``generate_uid(entropy_srcs=...)``), so building twice gives the same studies and
uploading twice is harmless (Orthanc answers ``AlreadyStored``).

Voxel order: OHIF (cornerstone3D) and MONAI Label (SimpleITK / ITK readers) index a series as ``(i, j, k)`` =
(column, row, slice), slices sorted along the normal of the image plane. :func:`lits_reference_mask` returns the
reference mask as a ``[slices, rows, columns]`` array, so ``mask.ravel()`` has the memory order of a cornerstone
labelmap and ``mask.transpose(2, 1, 0)`` is the array MONAI ``LoadImage`` returns for the series.

CLI::

    python scripts/stack_studies.py build [--out DIR]          # write the files, print a JSON summary
    python scripts/stack_studies.py upload [--url URL] [--out DIR]   # build, then POST every file (again: harmless)
    python scripts/stack_studies.py info                       # the UIDs and counts as JSON
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / ".stack" / "dicom"
DEFAULT_ORTHANC = "http://127.0.0.1:8042"

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PYDICOM_TEST_FILES = ("CT_small.dcm", "MR_small.dcm")
LITS_PATIENT_ID = "MEDPCLIP-LITS-117"
LITS_STUDY_DESCRIPTION = "MedP-CLIP demo: LiTS liver CT case 117 (non-commercial licence)"
# HU = stored * slope + intercept; the LiTS HU values are multiples of 1/8, so slope 1/8 keeps them exactly
# while (HU + 1024) * 8 stays inside int16 for the case's range (-1063.25 .. 1877.25).
RESCALE_INTERCEPT = -1024.0


def _uid(*parts: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["medpclip-stack", *parts])


def lits_study_uid() -> str:
    """StudyInstanceUID of the LiTS study (deterministic)."""
    return _uid("lits117", "study")


def lits_series_uid() -> str:
    """SeriesInstanceUID of the LiTS CT series (deterministic)."""
    return _uid("lits117", "series", "ct")


@dataclass(frozen=True)
class LpsVolume:
    """A volume reoriented so that its array axes run toward patient Left, Posterior, Superior (DICOM LPS).

    ``image[c, r, k]`` is the voxel at column ``c``, row ``r`` of slice ``k``; ``origin`` is the LPS position (mm)
    of voxel ``(0, 0, 0)``; ``axes`` holds the LPS direction cosines of the three array axes (rows of the
    matrix) and ``spacing`` their voxel sizes (mm).
    """

    image: np.ndarray
    label: np.ndarray
    origin: np.ndarray
    axes: np.ndarray
    spacing: np.ndarray


def lits_lps_volume() -> LpsVolume:
    """The LiTS case (RAS arrays and affine from ``medpclip.data.samples``) reoriented to LPS array axes."""
    import nibabel as nib

    from medpclip.data.samples import lits_affine, lits_arrays

    ct, label = lits_arrays()
    affine_ras = np.asarray(lits_affine(ct.shape), dtype=np.float64)
    # the array axis closest to each of L, P, S, then flip/permute the arrays and the affine accordingly
    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(affine_ras), nib.orientations.axcodes2ornt(("L", "P", "S"))
    )
    image = nib.orientations.apply_orientation(ct, transform)
    lab = nib.orientations.apply_orientation(label, transform)
    affine_ras = affine_ras @ nib.orientations.inv_ornt_aff(transform, ct.shape)
    affine_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras  # RAS -> LPS: negate x and y
    columns = affine_lps[:3, :3].T  # row a = world step of array axis a
    spacing = np.linalg.norm(columns, axis=1)
    return LpsVolume(
        image=np.ascontiguousarray(image, dtype=np.float32),
        label=np.ascontiguousarray(lab, dtype=np.uint8),
        origin=affine_lps[:3, 3].copy(),
        axes=columns / spacing[:, None],
        spacing=spacing,
    )


def lits_reference_mask(structure: str = "liver") -> np.ndarray:
    """Reference mask of the LiTS series as a ``[slices, rows, columns]`` bool array (DICOM / OHIF voxel order).

    Args:
        structure: ``"liver"`` (liver including its tumours, the usual liver-segmentation reference) or
            ``"tumor"``.
    """
    vol = lits_lps_volume()
    if structure == "liver":
        mask = vol.label > 0
    elif structure in ("tumor", "tumour"):
        mask = vol.label == 2
    else:
        raise ValueError(f"structure should be 'liver' or 'tumor', not {structure!r}")
    return np.ascontiguousarray(mask.transpose(2, 1, 0))


def _rescale_slope(image: np.ndarray) -> float:
    for slope in (1.0, 0.5, 0.25, 0.125, 0.0625):
        stored = (image - RESCALE_INTERCEPT) / slope
        if np.array_equal(stored, np.round(stored)) and stored.min() >= -32768 and stored.max() <= 32767:
            return slope
    raise ValueError("the CT values cannot be stored exactly as int16 with a power-of-two rescale slope")


def lits_datasets() -> list:
    """The LiTS CT series as pydicom datasets, one per axial slice, sorted by InstanceNumber (= slice index)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    vol = lits_lps_volume()
    slope = _rescale_slope(vol.image)
    stored = np.round((vol.image - RESCALE_INTERCEPT) / slope).astype(np.int16)
    n_cols, n_rows, n_slices = stored.shape
    study, series = lits_study_uid(), lits_series_uid()
    frame_of_reference = _uid("lits117", "frame-of-reference")
    hu = stored.astype(np.float64) * slope + RESCALE_INTERCEPT
    if not np.array_equal(hu, vol.image.astype(np.float64)):
        raise AssertionError("the stored pixel values do not give back the HU values")

    datasets = []
    for k in range(n_slices):
        sop = _uid("lits117", "instance", str(k))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber = "LITS117"
        ds.Modality = "CT"
        ds.Manufacturer = "MedP-CLIP (converted from the LiTS challenge data)"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = LITS_STUDY_DESCRIPTION
        ds.SeriesDescription = "Abdomen CT, liver (LiTS 117, 128^3 resampled)"
        ds.BodyPartExamined = "ABDOMEN"
        ds.PatientName = "LiTS^Case117"
        ds.PatientID = LITS_PATIENT_ID
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PositionReferenceIndicator = ""
        position = vol.origin + k * vol.spacing[2] * vol.axes[2]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        # first triplet: direction along a row (column index grows), second: down a column (row index grows)
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in np.concatenate([vol.axes[0], vol.axes[1]])]
        ds.SliceLocation = f"{float(position @ np.cross(vol.axes[0], vol.axes[1])):.4f}"
        ds.PixelSpacing = [f"{vol.spacing[1]:.4f}", f"{vol.spacing[0]:.4f}"]  # [between rows, between columns]
        ds.SliceThickness = f"{vol.spacing[2]:.4f}"
        ds.SpacingBetweenSlices = f"{vol.spacing[2]:.4f}"
        ds.KVP = ""
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = n_rows
        ds.Columns = n_cols
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = f"{RESCALE_INTERCEPT:g}"
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleType = "HU"
        ds.WindowCenter = "60"  # abdomen / liver window
        ds.WindowWidth = "400"
        ds.WindowCenterWidthExplanation = "LIVER"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # [rows, columns]
        datasets.append(ds)
    return datasets


def pydicom_test_files() -> list[Path]:
    """Real CT and MR files shipped with pydicom (uploaded unchanged)."""
    from pydicom.data import get_testdata_file

    paths = []
    for name in PYDICOM_TEST_FILES:
        path = get_testdata_file(name)
        if path is None:
            raise FileNotFoundError(f"pydicom test file {name} not found")
        paths.append(Path(path))
    return paths


def build(out: Path = DEFAULT_OUT) -> list[Path]:
    """Write the LiTS series to ``out/lits117/`` and return every file to upload (LiTS series + pydicom files)."""
    folder = Path(out) / "lits117"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for ds in lits_datasets():
        path = folder / f"CT{int(ds.InstanceNumber):04d}.dcm"
        ds.save_as(path, write_like_original=False)
        files.append(path)
    return files + pydicom_test_files()


def upload(files: list[Path], url: str = DEFAULT_ORTHANC, timeout: float = 30.0) -> dict:
    """POST every file to Orthanc's REST API (``/instances``); re-uploading an instance is fine.

    Returns:
        ``{"uploaded": n, "already_stored": m, "studies": [...]}`` (Orthanc study identifiers).

    Raises:
        RuntimeError: if Orthanc refuses a file or cannot be reached.
    """
    counts = {"Success": 0, "AlreadyStored": 0}
    studies = set()
    for path in files:
        request = urllib.request.Request(
            url.rstrip("/") + "/instances",
            data=Path(path).read_bytes(),
            headers={"Content-Type": "application/dicom"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(f"Orthanc at {url} refused {path}: {exc}") from exc
        status = answer.get("Status", "")
        if status not in counts:
            raise RuntimeError(f"Orthanc at {url} refused {path}: {answer}")
        counts[status] += 1
        studies.add(answer.get("ParentStudy"))
    return {"uploaded": counts["Success"], "already_stored": counts["AlreadyStored"], "studies": sorted(studies)}


def info() -> dict:
    """UIDs and counts the tests and the stack script need."""
    import pydicom

    others = []
    for path in pydicom_test_files():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        others.append(
            {
                "file": path.name,
                "modality": str(ds.Modality),
                "study_uid": str(ds.StudyInstanceUID),
                "series_uid": str(ds.SeriesInstanceUID),
            }
        )
    n_slices = lits_lps_volume().image.shape[2]
    return {
        "lits": {
            "study_uid": lits_study_uid(),
            "series_uid": lits_series_uid(),
            "patient_id": LITS_PATIENT_ID,
            "instances": int(n_slices),
        },
        "pydicom": others,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="write the DICOM files")
    p_build.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p_upload = sub.add_parser("upload", help="build and upload every file to Orthanc")
    p_upload.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p_upload.add_argument("--url", default=DEFAULT_ORTHANC, help=f"Orthanc REST root (default {DEFAULT_ORTHANC})")
    sub.add_parser("info", help="print the UIDs as JSON")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            print(json.dumps(info(), indent=1))
        elif args.command == "build":
            files = build(args.out)
            print(json.dumps({"files": len(files), "out": str(args.out)}))
        else:
            result = upload(build(args.out), args.url)
            print(json.dumps(result))
    except (RuntimeError, OSError, ValueError, ModuleNotFoundError) as exc:
        print(f"stack_studies: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
