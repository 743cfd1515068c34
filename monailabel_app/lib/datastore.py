"""Ids and tags that become file names in the datastore must stay file names.

MONAI Label 0.8.5 joins the image id of an upload and the tag of a saved label into paths unchecked: a label saved
with the tag ``../../x`` (or ``/tmp/x``) was written outside the studies folder. :func:`with_safe_ids` refuses such
names with HTTP 400 before anything is written, for the local and the DICOMweb datastore alike.
"""

from __future__ import annotations

import re

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException

__all__ = ["NAME", "with_safe_ids"]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # file stems, DICOM UIDs, tags such as "final"


def _check(value: object, what: str) -> None:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise MONAILabelException(
            MONAILabelError.INVALID_INPUT,
            f"{what} {str(value)[:80]!r} is not a plain name (letters, digits, '.', '_', '-'; no paths).",
        )


class _SafeIds:
    """Checks the names of :meth:`add_image` and :meth:`save_label` before the datastore turns them into paths."""

    def add_image(self, image_id: str, image_filename: str, image_info: dict) -> str:
        _check(image_id, "image id")
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict, *args, **kw) -> str:
        _check(image_id, "image id")
        _check(label_tag, "label tag")
        return super().save_label(image_id, label_filename, label_tag, label_info, *args, **kw)


def with_safe_ids(datastore: Datastore) -> Datastore:
    """``datastore`` with its class extended by the checks (``isinstance`` tests of MONAI Label still hold)."""
    cls = type(datastore)
    datastore.__class__ = type(f"Safe{cls.__name__}", (_SafeIds, cls), {})
    return datastore
