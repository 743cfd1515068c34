"""DICOM SEG without downloads: MONAI Label converts labels with dcmqi's ``itkimage2segimage``, fetched from GitHub
at start-up; it can write the same SEG with pydicom-seg, one of its own dependencies, when asked to."""

from __future__ import annotations

import functools

import monailabel.datastore.dicom
import monailabel.endpoints.infer
from monailabel.datastore.utils import convert

__all__ = ["write_seg_with_pydicom_seg"]


def write_seg_with_pydicom_seg() -> None:
    """Make the DICOMweb datastore's ``save_label`` and ``/infer?output=dicom_seg`` use pydicom-seg."""

    @functools.wraps(convert.nifti_to_dicom_seg)
    def nifti_to_dicom_seg(series_dir, label, label_info, file_ext="*", use_itk=True):  # noqa: ANN001, ANN202
        return convert.nifti_to_dicom_seg(series_dir, label, label_info, file_ext, use_itk=False)

    monailabel.datastore.dicom.nifti_to_dicom_seg = nifti_to_dicom_seg
    monailabel.endpoints.infer.nifti_to_dicom_seg = nifti_to_dicom_seg
