"""Datalists in three forms, validated on load with one error that lists every bad entry.

* (a) label maps, MONAI/Decathlon style: ``{"labels": {"1": "liver", ...}, "label_source": "lits",
  "training": [{"image": ..., "label": ..., ["axis": 0-2, "slices": [start, stop]], ["modality": ...]}]}``;
* (b) region annotations: ``{"training": [{"image": ..., "regions": [{"name" | "text": ...,
  "mask": file | "box": [i0, j0, i1, j1] | "points": [[i, j], ...]}]}]}``;
* (c) image–text pairs: ``{"training": [{"image": ..., "text": ...}]}``.

An optional list-level ``name`` (MONAI/Decathlon style) names the datalist's metrics in evaluation (default: its
``label_source``). Paths are relative to the datalist's folder unless ``base_dir`` is given. ``axis``/``slices``
mark a slab of a 3D volume from which 2D slices are sampled.
"""

from __future__ import annotations

import json
from pathlib import Path

from medpclip.knowledge import KnowledgeBase, default_knowledge_base

__all__ = ["DatalistError", "load_datalist", "datalist_form", "image_shape"]

FORMS = ("labels", "regions", "pairs")


class DatalistError(ValueError):
    """A datalist with bad entries; the message lists all of them."""


def image_shape(path: Path) -> tuple[int, ...]:
    """Spatial shape from the file header without reading voxels: NIfTI, NRRD, DICOM file or folder, PNG/JPEG.
    Singleton trailing depth is dropped, so a single DICOM frame is 2D."""
    name = path.name.lower()
    if path.is_dir():
        import pydicom

        files = sorted(p for p in path.iterdir() if p.is_file())
        if not files:
            raise ValueError("empty DICOM folder")
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        shape: tuple[int, ...] = (int(ds.Rows), int(ds.Columns), len(files))
    elif name.endswith((".nii", ".nii.gz")):
        import nibabel

        shape = tuple(int(s) for s in nibabel.load(str(path)).shape)
    elif name.endswith((".png", ".jpg", ".jpeg")):
        from PIL import Image

        with Image.open(path) as im:
            shape = (im.width, im.height)  # MONAI PILReader order
    elif name.endswith(".nrrd"):
        import nrrd

        shape = tuple(int(s) for s in nrrd.read_header(str(path))["sizes"])
    else:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        shape = (int(ds.Rows), int(ds.Columns), int(getattr(ds, "NumberOfFrames", 1) or 1))
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def datalist_form(items: list[dict]) -> str:
    """``"labels"``, ``"regions"`` or ``"pairs"`` from the keys of the first item."""
    first = items[0] if items else {}
    for key, form in (("label", "labels"), ("regions", "regions"), ("text", "pairs")):
        if key in first:
            return form
    raise DatalistError("datalist items have none of 'label', 'regions' or 'text': cannot tell the form.")


def load_datalist(
    path: str | Path,
    split: str = "training",
    base_dir: str | Path | None = None,
    knowledge: KnowledgeBase | None = None,
    check_shapes: bool = True,
) -> list[dict]:
    """Load one split, resolve paths and validate every entry.

    Each returned item carries the list-level ``labels``/``label_source``/``modality``/``name`` when the item has
    none.

    Raises:
        DatalistError: listing every bad entry (missing files, unknown labels, wrong dimensionality, bad slabs).
    """
    path = Path(path)
    if not path.is_file():
        raise DatalistError(f"datalist {path} does not exist.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatalistError(f"datalist {path} is not valid JSON: {err}") from err
    if split not in data or not isinstance(data[split], list):
        raise DatalistError(f"datalist {path} has no list '{split}' (keys: {', '.join(data)}).")
    base = Path(base_dir) if base_dir is not None else path.parent
    knowledge = knowledge or default_knowledge_base()
    shared = {k: data[k] for k in ("labels", "label_source", "modality", "name") if k in data}
    items = [{**shared, **item} for item in data[split]]
    form = datalist_form(items)
    problems: list[str] = []
    for index, item in enumerate(items):
        found = _check_item(item, form, base, knowledge, check_shapes)
        if found:
            problems.append(f"  {split}[{index}] ({item.get('image', '?')}): " + "; ".join(found))
    if problems:
        raise DatalistError(
            f"{len(problems)} bad entr{'y' if len(problems) == 1 else 'ies'} in {path}:\n" + "\n".join(problems)
        )
    return items


def _resolve(item: dict, key: str, base: Path) -> Path:
    resolved = Path(item[key]) if Path(item[key]).is_absolute() else base / item[key]
    item[key] = str(resolved)
    return resolved


def _check_item(item: dict, form: str, base: Path, knowledge: KnowledgeBase, check_shapes: bool) -> list[str]:
    problems = []
    if "image" not in item:
        return ["no 'image'"]
    image = _resolve(item, "image", base)
    if not image.exists():
        return [f"missing file {image}"]
    shape = None
    if check_shapes:
        try:
            shape = image_shape(image)
        except Exception as err:  # noqa: BLE001 - any unreadable header is reported, not raised one by one
            return [f"cannot read the image header: {err}"]
        if len(shape) not in (2, 3):
            problems.append(f"image has {len(shape)} spatial dims, expected 2 or 3")
    if form == "labels":
        problems += _check_label_item(item, base, knowledge, shape)
    elif form == "regions":
        problems += _check_regions(item, base, knowledge, shape)
    elif not isinstance(item.get("text"), str) or not item["text"].strip():
        problems.append("'text' should be a non-empty string")
    if shape is not None and ("axis" in item or "slices" in item):
        problems += _check_slab(item, shape)
    return problems


def _check_label_item(item: dict, base: Path, knowledge: KnowledgeBase, shape: tuple | None) -> list[str]:
    problems = []
    if "label" not in item:
        return ["no 'label'"]
    label = _resolve(item, "label", base)
    if not label.exists():
        return [f"missing label file {label}"]
    if shape is not None:
        label_shape = image_shape(label)
        if label_shape != shape:
            problems.append(f"label shape {list(label_shape)} differs from image shape {list(shape)}")
    names = item.get("labels")
    if not isinstance(names, dict) or not names:
        return problems + ["no 'labels' map from label value to name"]
    mapping = knowledge.map_labels(names.values(), item.get("label_source"))
    if mapping.unmapped:
        more = f" and {len(mapping.unmapped) - 10} more" if len(mapping.unmapped) > 10 else ""
        problems.append(f"{len(mapping.unmapped)} unknown labels {mapping.unmapped[:10]}{more}")
    return problems


def _check_regions(item: dict, base: Path, knowledge: KnowledgeBase, shape: tuple | None) -> list[str]:
    regions = item.get("regions")
    if not isinstance(regions, list) or not regions:
        return ["'regions' should be a non-empty list"]
    problems = []
    for r, region in enumerate(regions):
        name = region.get("name") or region.get("text")
        if not name:
            problems.append(f"region {r}: no 'name' or 'text'")
        elif "name" in region and knowledge.lookup(region["name"], item.get("label_source")) is None:
            problems.append(f"region {r}: unknown label {region['name']!r}")
        if not any(k in region for k in ("mask", "box", "points")):
            problems.append(f"region {r}: no 'mask', 'box' or 'points'")
        if "mask" in region:
            mask = _resolve(region, "mask", base)
            if not mask.exists():
                problems.append(f"region {r}: missing mask file {mask}")
            elif shape is not None and (mask_shape := image_shape(mask)) != shape:
                problems.append(f"region {r}: mask shape {list(mask_shape)} differs from {list(shape)}")
        if "box" in region:
            box = region["box"]
            if len(box) != 4 or box[2] < box[0] or box[3] < box[1]:
                problems.append(f"region {r}: box {box} should be [i0, j0, i1, j1] with i0 <= i1, j0 <= j1")
    return problems


def _check_slab(item: dict, shape: tuple[int, ...]) -> list[str]:
    if len(shape) != 3:
        return [f"'axis'/'slices' need a 3D image, this one is {len(shape)}D {list(shape)}"]
    axis = item.get("axis", 0)
    if axis not in (0, 1, 2):
        return [f"axis {axis} should be 0, 1 or 2"]
    start, stop = item.get("slices", (0, shape[axis]))
    if not 0 <= start < stop <= shape[axis]:
        return [f"slices [{start}, {stop}) do not fit axis {axis} of size {shape[axis]}"]
    return []
