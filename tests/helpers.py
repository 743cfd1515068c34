"""Helpers shared by test modules (``tests`` is on pytest's ``pythonpath``): the shipped checkpoint and a mark for
tests that need it, scripts as modules, a tiny training recipe and a one-slice DICOM CT writer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from medpclip.engines.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "bundle" / "models" / "model.pt"
needs_checkpoint = pytest.mark.skipif(not SHIPPED.is_file(), reason="this tree has no bundle/models/model.pt")


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (``scripts/`` is not a package), loaded once per session; it is registered in
    ``sys.modules`` because dataclasses look their module up there."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def tiny_train_config(tmp_path: Path, datalist: Path, **changes: object) -> TrainConfig:
    """A few-iteration training recipe on one label datalist, run in the test process (no data workers)."""
    settings = dict(
        out_dir=str(tmp_path / "run"),
        train_datalists=[str(datalist)],
        iterations=3,
        batch_size=2,
        num_regions=3,
        eval_every=100,
        checkpoint_every=1,
        num_workers=0,
        warmup=1,
    )
    return TrainConfig(**{**settings, **changes})


def write_ct_dicom(
    path: Path,
    hu: np.ndarray | None = None,
    *,
    shape: tuple[int, int] = (32, 40),
    spacing: tuple[float, float] = (0.8, 0.8),
    thickness: float = 2.0,
    pixels: bool = True,
) -> Path:
    """One CT slice (Modality CT, HU through rescale) with file meta. ``hu`` ``[Rows, Columns]`` (default: air with
    a soft-tissue square, ``shape``); ``pixels=False`` leaves the pixel data out, so the header may declare any
    ``shape``."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian, generate_uid

    if hu is None and pixels:
        hu = np.full(shape, -1000.0)
        hu[shape[0] // 4 : shape[0] // 2, shape[1] // 4 : shape[1] // 2] = 40.0
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "CT", "Test^Phantom", "0"
    ds.Rows, ds.Columns = shape if hu is None else hu.shape
    ds.PixelSpacing, ds.SliceThickness = list(spacing), thickness
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    if pixels:
        ds.PixelData = (hu + 1024).astype(np.uint16).tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, True
    ds.save_as(str(path), write_like_original=False)
    return Path(path)
