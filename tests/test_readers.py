"""Palette-colour DICOM reading (medpclip.data.readers) through the training loader and load_image."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

from medpclip.data.dataset import ImageSliceDataset
from medpclip.data.readers import PaletteColourDicomReader
from medpclip.inference import load_image

# a 16-bit palette of three entries: black, pure red, white
PALETTE = np.array([[0, 0, 0], [65535, 0, 0], [65535, 65535, 65535]], np.uint16)


def _palette_dicom(path, indices: np.ndarray, modality: str = "US", photometric: str = "PALETTE COLOR"):
    """A DICOM file of 16-bit palette ``indices`` ``[rows, columns]`` (or ``[frames, rows, columns]``) with
    :data:`PALETTE`."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Rows, ds.Columns = indices.shape[-2:]
    if indices.ndim == 3:
        ds.NumberOfFrames = len(indices)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    for channel, colour in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [len(PALETTE), 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", PALETTE[:, channel].tobytes())
    ds.PixelData = indices.astype(np.uint16).tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False  # pydicom 2 reads the encoding from the dataset
    ds.save_as(str(path), write_like_original=False)
    return path


def _indices() -> np.ndarray:
    """``[6, 8]`` palette indices: black with a red square and a white bar."""
    indices = np.zeros((6, 8), np.uint16)
    indices[1:3, 1:3] = 1
    indices[4, :] = 2
    return indices


def test_a_palette_colour_frame_reads_as_the_grey_of_its_colours_columns_first(tmp_path):
    image = load_image(_palette_dicom(tmp_path / "us.dcm", _indices()))
    assert image.shape == (1, 8, 6), "a single frame comes as (columns, rows), as ITK orders grey frames"
    expected = PALETTE[_indices()].astype(np.float64).mean(-1)  # the grey of the colours (medpclip grey())
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(image[0].numpy(), expected.T, atol=0.02)  # red between black and white


def test_the_frames_modality_tag_reaches_the_intensity_scaling(tmp_path):
    path = _palette_dicom(tmp_path / "ct.dcm", _indices(), modality="CT")
    image = load_image(path)
    assert "00080060" in image.meta and image.meta["00080060"]["Value"] == ["CT"]


def test_other_files_are_left_to_monais_readers(tmp_path):
    reader = PaletteColourDicomReader()
    grey = _palette_dicom(tmp_path / "grey.dcm", _indices(), photometric="MONOCHROME2")
    frames = _palette_dicom(tmp_path / "frames.dcm", np.stack([_indices()] * 2))  # swap_ij would swap frames, rows
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    assert reader.verify_suffix(str(_palette_dicom(tmp_path / "one.dcm", _indices())))
    assert not reader.verify_suffix(str(frames))
    assert reader.verify_suffix(str(tmp_path / "us.dcm")) is False  # missing
    assert not reader.verify_suffix(str(grey)) and not reader.verify_suffix(str(tmp_path / "v.nii.gz"))
    assert not reader.verify_suffix(str(tmp_path))  # a series folder
    assert load_image(grey).shape == (1, 8, 6)  # read by ITK, as before


def test_the_training_loader_reads_palette_colour_ultrasound(tmp_path):
    items = [{"image": str(_palette_dicom(tmp_path / "us.dcm", _indices())), "modality": "US"}]
    dataset = ImageSliceDataset(items, image_size=16)
    assert dataset.readable_indices() == [0]
    image = dataset[0]["image"]
    assert image.shape == (1, 16, 16) and float(image.max()) == pytest.approx(1.0, abs=0.01)
