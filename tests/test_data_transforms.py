"""Data transforms: loading 2D/3D formats, modality intensity, slice sampling, region sampling, captions."""

from __future__ import annotations

import nibabel as nib
import nrrd
import numpy as np
import pytest
import torch
from monai.transforms import LoadImaged
from PIL import Image
from pydicom.data import get_testdata_file

from medpclip.data.intensity import CT_WINDOWS, ModalityIntensityd, modality_family
from medpclip.data.phantoms import PHANTOM_LABELS, phantom_slice, random_phantom
from medpclip.data.regions import WHOLE_IMAGE, RegionCaptionsd, SampleRegionPromptsd
from medpclip.data.slicing import SampleSliced

NAMES = {k: v for k, v in PHANTOM_LABELS.items() if k}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One small file per supported format, all holding the same 2D phantom (3D: a stack of it)."""
    root = tmp_path_factory.mktemp("formats")
    image, _ = phantom_slice(size=32)
    paths = {}
    nib.save(nib.Nifti1Image(image, np.eye(4)), root / "slice.nii.gz")
    nib.save(nib.Nifti1Image(np.stack([image] * 5, -1), np.eye(4)), root / "volume.nii.gz")
    header = {"space": "left-posterior-superior", "space directions": np.eye(3), "space origin": np.zeros(3)}
    nrrd.write(str(root / "volume.nrrd"), np.stack([image] * 4, -1), header)  # as 3D Slicer writes them
    Image.fromarray((image * 255).astype(np.uint8)).save(root / "slice.png")
    for name in ("slice.nii.gz", "volume.nii.gz", "volume.nrrd", "slice.png"):
        paths[name] = root / name
    paths["ct.dcm"] = get_testdata_file("CT_small.dcm")
    paths["mr.dcm"] = get_testdata_file("MR_small.dcm")
    return paths


@pytest.mark.parametrize(
    ("name", "dims"), [("slice.nii.gz", 2), ("volume.nii.gz", 3), ("volume.nrrd", 3), ("slice.png", 2), ("ct.dcm", 2)]
)
def test_loading_and_slicing_gives_2d_slices(files, name, dims):
    loaded = LoadImaged(keys="image", ensure_channel_first=True, image_only=True)({"image": str(files[name])})
    sliced = SampleSliced(keys="image").set_random_state(0)(loaded)
    assert sliced["image"].ndim == 3 and sliced["image"].shape[0] == 1
    assert (sliced["slice_axis"] is None) == (dims == 2)


def test_slices_stay_inside_the_slab():
    volume = torch.arange(20).float().view(1, 1, 1, 20).expand(1, 4, 5, 20).clone()
    sampler = SampleSliced(keys="image").set_random_state(3)
    seen = set()
    for _ in range(50):
        out = sampler({"image": volume, "axis": 2, "slices": [6, 9]})
        assert out["image"].shape == (1, 4, 5)
        seen.add(out["slice_index"])
        assert out["image"][0, 0, 0].item() == out["slice_index"]
    assert seen == {6, 7, 8}
    fixed = sampler({"image": volume, "axis": 1, "slice": 2})
    assert fixed["image"].shape == (1, 4, 20) and fixed["slice_index"] == 2
    with pytest.raises(ValueError, match="do not fit"):
        sampler({"image": volume, "axis": 2, "slices": [15, 30]})


def test_ct_is_windowed_and_other_modalities_percentile_scaled(files):
    hu = torch.tensor([[[-1000.0, 40.0, 240.0, 3000.0]]])
    out = ModalityIntensityd(keys="image")({"image": hu, "modality": "CT"})["image"]
    level, width = CT_WINDOWS["abdomen"]
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.5, 1.0, 1.0]]]))
    assert level == 40 and width == 400
    brain = ModalityIntensityd(keys="image")({"image": hu, "modality": "CT", "window": "brain"})["image"]
    assert brain[0, 0, 1] == 0.5 and brain[0, 0, 2] == 1.0
    mr = torch.rand(1, 16, 16) * 3000
    scaled = ModalityIntensityd(keys="image")({"image": mr, "modality": "MR T1"})["image"]
    assert scaled.min() >= 0 and scaled.max() <= 1 and scaled.max() > 0.99
    # the modality comes from the DICOM header when the datalist does not say
    loaded = LoadImaged(keys="image", ensure_channel_first=True, image_only=True)({"image": str(files["ct.dcm"])})
    raw = loaded["image"].clone()
    windowed = ModalityIntensityd(keys="image")(loaded)["image"]
    expected = ((raw - (level - width / 2)) / width).clamp(0, 1)
    torch.testing.assert_close(windowed.as_tensor(), expected.as_tensor(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="window"):
        ModalityIntensityd(keys="image")({"image": hu, "modality": "CT", "window": "elbow"})


@pytest.mark.parametrize("modality", ["CT", "MR", "XR", "US", "PET", "NM"])
def test_modality_families(modality):
    assert modality_family(modality if modality != "XR" else "CR") == modality


@pytest.mark.parametrize("seed", range(12))
def test_sampled_prompts_lie_in_and_bound_their_region(seed):
    phantom = random_phantom(seed, size=64)
    sampler = SampleRegionPromptsd(num_regions=5, max_positive=3, max_negative=2, box_jitter=0.3, whole_image_prob=0.2)
    sampler.set_random_state(seed)
    out = sampler({"label": phantom.labels[None], "label_names": phantom.names})
    masks, boxes = out["region_masks"].bool(), out["region_boxes"]
    points, labels = out["region_points"].long(), out["region_point_labels"]
    assert masks.shape == (5, 64, 64) and boxes.shape == (5, 4) and points.shape == (5, 5, 2)
    for r in range(5):
        mask = masks[r]
        if out["region_names"][r] == WHOLE_IMAGE:
            assert mask.all() and (labels[r] == -1).all()
            continue
        assert (phantom.labels == out["region_values"][r].item()).sum() == mask.sum()
        rows, cols = torch.nonzero(mask, as_tuple=True)
        i0, j0, i1, j1 = boxes[r].tolist()
        assert i0 <= rows.min() and j0 <= cols.min() and i1 >= rows.max() and j1 >= cols.max()
        assert 0 <= i0 <= i1 <= 63 and 0 <= j0 <= j1 <= 63
        positive = points[r][labels[r] == 1]
        negative = points[r][labels[r] == 0]
        assert len(positive) >= 1
        assert mask[positive[:, 0], positive[:, 1]].all(), "positive clicks must lie inside the region"
        assert not mask[negative[:, 0], negative[:, 1]].any(), "negative clicks must lie outside the region"
        b0, c0, b1, c1 = boxes[r].round().long().tolist()
        if not mask[b0 : b1 + 1, c0 : c1 + 1].all():  # the box holds background: negatives are drawn there
            assert ((negative >= torch.tensor([b0, c0])) & (negative <= torch.tensor([b1, c1]))).all()


def _depth_volume(depth: int = 40, side: int = 33) -> torch.Tensor:
    """``[1, side, side, depth]``: every voxel holds its depth index along the last axis."""
    return torch.arange(depth).float().view(1, 1, 1, depth).expand(1, side, side, depth).clone()


def test_tilted_slices_cross_depths_but_never_leave_their_bounds():
    volume = _depth_volume()
    sampler = SampleSliced(keys=["image", "label"], tilt=1.0, interpolate="image").set_random_state(0)
    spreads = []
    for _ in range(40):
        out = sampler({"image": volume, "label": volume, "axis": 2, "slices": [12, 20], "tilt_bounds": [5, 30]})
        image, label, k = out["image"][0], out["label"][0], out["slice_index"]
        assert image.shape == (33, 33) and 12 <= k < 20
        assert image.min() >= 5 and image.max() <= 29, "the plane is folded flat at the tilt bounds"
        assert torch.equal(label, label.round()), "label maps are read from the nearest slice, not blended"
        assert (label - image).abs().max() <= 0.5
        assert abs(image[16, 16].item() - k) < 1e-6, "the plane turns about the drawn slice's centre"
        spreads.append((image.max() - image.min()).item())
    assert max(spreads) > 5, "planes are tilted"
    assert len({round(s, 3) for s in spreads}) > 10, "by random angles"


def test_a_tilted_slice_on_the_edge_of_its_bounds_folds_and_tilt_zero_changes_nothing():
    volume = _depth_volume()
    sampler = SampleSliced(keys="image", tilt=1.0).set_random_state(1)
    edge = sampler({"image": volume, "axis": 2, "slices": [10, 11], "tilt_bounds": [10, 25]})["image"]
    assert edge.min() == 10 and edge.max() > 11, "flat on the bound's side, tilted into the range on the other"
    fixed = sampler({"image": volume, "axis": 2, "slice": 17})
    assert torch.all(fixed["image"] == 17), "a given slice index (evaluation) is never tilted"
    plain, tilted = SampleSliced(keys="image").set_random_state(2), SampleSliced(keys="image", tilt=0.0)
    tilted.set_random_state(2)
    for _ in range(5):
        item = {"image": volume, "slices": [3, 30]}
        a, b = plain(item), tilted(item)
        assert a["slice_axis"] == b["slice_axis"] and torch.equal(a["image"], b["image"])
    with pytest.raises(ValueError, match="tilt"):
        SampleSliced(keys="image", tilt=1.5)


def test_tilt_bounds_join_touching_slabs_of_one_volume_and_axis_only():
    from medpclip.data.dataset import tilt_bounds

    def item(axis, lo, hi, label="a.nii"):
        return {"image": "t1.nii", "label": label, "axis": axis, "slices": [lo, hi]}

    items = [
        item(0, 10, 20),
        item(0, 20, 27),
        item(0, 33, 40),
        item(1, 20, 27),
        item(0, 20, 27, "b.nii"),
        {"image": "x"},
    ]
    out = tilt_bounds(items)
    assert [i.get("tilt_bounds") for i in out] == [[10, 27], [10, 27], [33, 40], [20, 27], [20, 27], None]
    assert "tilt_bounds" not in items[0], "the items given are not changed"


def test_neighbour_slices_lie_one_to_k_steps_away_along_the_same_axis():
    volume = torch.arange(20).float().view(1, 1, 1, 20).expand(1, 4, 5, 20).clone()
    sampler = SampleSliced(keys=["image", "label"], neighbours=3, neighbour_keys="label").set_random_state(0)
    offsets = set()
    for _ in range(80):
        out = sampler({"image": volume, "label": volume + 100, "axis": 2})
        k, n = out["slice_index"], int(out["label_neighbour"][0, 0, 0].item()) - 100
        assert out["image"][0, 0, 0].item() == k and out["label_neighbour"].shape == (1, 4, 5)
        assert 0 <= n < 20 and abs(n - k) <= 3 and (n != k or k in (0, 19)), "1..3 steps away, clipped at the ends"
        offsets.add(n - k)
    assert {-3, -2, -1, 1, 2, 3} <= offsets
    assert "image_neighbour" not in out, "only the neighbour keys get a neighbour"
    flat = sampler({"image": volume[..., 0], "label": volume[..., 0]})
    assert torch.equal(flat["label_neighbour"], flat["label"]), "a 2D input is its own neighbour"
    plain = SampleSliced(keys=["image", "label"]).set_random_state(0)({"image": volume, "label": volume, "axis": 2})
    assert "label_neighbour" not in plain


def test_region_priors_are_prompted_from_the_neighbouring_slice_as_propagation_prompts_them():
    labels = np.zeros((1, 32, 32), np.int64)
    labels[0, 8:20, 8:20], labels[0, 2:6, 2:6] = 1, 2
    neighbour = np.zeros_like(labels)
    neighbour[0, 10:24, 9:22] = 1  # the structure moved and grew; label 2 is absent on the neighbouring slice
    data = {"label": labels, "label_names": {1: "liver", 2: "spleen"}}
    out = SampleRegionPromptsd(num_regions=2).set_random_state(0)({**data, "label_neighbour": neighbour})
    assert sorted(out["region_values"].tolist()) == [1, 2]
    for r, value in enumerate(out["region_values"].tolist()):
        expected = neighbour[0] == 1 if value == 1 else labels[0] == 2  # absent there: this slice's own mask
        assert torch.equal(out["region_prior_masks"][r].bool(), torch.from_numpy(expected))
        i, j = out["region_prior_points"][r, 0].long().tolist()
        assert expected[i, j], "the click lies inside the prior"
        rows, cols = np.nonzero(expected)
        assert out["region_prior_boxes"][r].tolist() == [rows.min(), cols.min(), rows.max(), cols.max()], "tight box"
    assert "region_prior_masks" not in SampleRegionPromptsd(num_regions=2).set_random_state(0)(data)


def test_box_shrink_cuts_into_regions_but_never_turns_a_box_inside_out():
    cut = 0
    for seed in range(12):
        phantom = random_phantom(seed, size=64)
        sampler = SampleRegionPromptsd(num_regions=5, box_jitter=0.0, box_shrink=0.45).set_random_state(seed)
        out = sampler({"label": phantom.labels[None], "label_names": phantom.names})
        for mask, box in zip(out["region_masks"].bool(), out["region_boxes"], strict=True):
            rows, cols = torch.nonzero(mask, as_tuple=True)
            i0, j0, i1, j1 = box.tolist()
            assert i0 <= i1 and j0 <= j1, "a valid box, also around a one-voxel-thin region"
            bounds = (rows.min().item(), cols.min().item(), rows.max().item(), cols.max().item())
            assert bounds[0] <= i0 and bounds[1] <= j0 and i1 <= bounds[2] and j1 <= bounds[3], "only ever shrunk"
            cut += (i0, j0, i1, j1) != bounds
    assert cut > 30, f"most boxes cut into their region ({cut} of 60)"
    edge = np.zeros((1, 16, 16), np.int64)
    edge[0, 15, 3:9] = 1  # one voxel thin, on the last row: a cut must not push the box off the image
    for seed in range(20):
        sampler = SampleRegionPromptsd(num_regions=1, box_jitter=0.0, box_shrink=0.45).set_random_state(seed)
        i0, j0, i1, j1 = sampler({"label": edge, "label_names": {1: "liver"}})["region_boxes"][0].tolist()
        assert 0 <= i0 <= i1 <= 15 and 0 <= j0 <= j1 <= 15
    with pytest.raises(ValueError, match="box_shrink"):
        SampleRegionPromptsd(box_shrink=0.5)


def test_region_sampling_is_deterministic_and_distinct():
    _, labels = phantom_slice(size=64)
    data = {"label": labels[None], "label_names": NAMES}
    a = SampleRegionPromptsd(num_regions=4).set_random_state(1)(data)
    b = SampleRegionPromptsd(num_regions=4).set_random_state(1)(data)
    assert a["region_names"] == b["region_names"]
    torch.testing.assert_close(a["region_points"], b["region_points"])
    assert len(set(a["region_names"])) == 4, "labels are drawn without replacement while enough are present"
    with pytest.raises(ValueError, match="no name"):
        SampleRegionPromptsd(num_regions=4).set_random_state(1)({"label": labels[None], "label_names": {1: "body"}})


def test_captions_follow_the_knowledge_base_and_the_seed():
    _, labels = phantom_slice(size=64)
    sampled = SampleRegionPromptsd(num_regions=3, whole_image_prob=0.3).set_random_state(2)(
        {"label": labels[None], "label_names": NAMES, "modality": "CT"}
    )
    a = RegionCaptionsd().set_random_state(7)(sampled)
    b = RegionCaptionsd().set_random_state(7)(sampled)
    assert a["region_texts"] == b["region_texts"]
    assert len(a["region_texts"]) == 3 and all(a["region_texts"])
    assert len(a["region_entry_ids"]) == 3
    with pytest.raises(ValueError, match="not in the knowledge base"):
        RegionCaptionsd()({"region_names": ["Flux_Capacitor_L"], "label_source": "aal3"})


def test_a_region_includes_its_parts():
    """LiTS labels the tumour apart from the liver; the liver region must still cover its tumours."""
    from medpclip.data.regions import label_parts
    from medpclip.knowledge import default_knowledge_base

    parts = label_parts({"1": "liver", "2": "tumor"}, default_knowledge_base(), "lits")
    assert parts == {1: [1, 2], 2: [2]}
    labels = np.zeros((1, 20, 20), np.int64)
    labels[0, 2:15, 2:15] = 1
    labels[0, 5:8, 5:8] = 2
    out = SampleRegionPromptsd(num_regions=2).set_random_state(0)(
        {"label": labels, "label_names": {1: "liver", 2: "tumor"}, "label_parts": parts}
    )
    liver = out["region_names"].index("liver")
    assert out["region_masks"][liver].sum() == 13 * 13, "the liver mask has no holes where the tumour is"
    assert out["region_masks"][1 - liver].sum() == 9


@pytest.mark.parametrize(
    ("affine", "sagittal_axis"),
    [
        (np.eye(4), 0),
        (np.diag([-1.0, -1.0, 1.0, 1.0]), 0),
        (np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]]), 2),
    ],
    ids=["RAS", "LPS", "permuted"],
)
def test_sagittal_slices_are_flagged_as_not_showing_the_side(affine, sagittal_axis):
    from monai.data import MetaTensor

    volume = MetaTensor(torch.rand(1, 6, 7, 8), affine=torch.as_tensor(affine))
    sampler = SampleSliced(keys="image").set_random_state(0)
    for axis in range(3):
        out = sampler({"image": volume, "axis": axis})
        assert out["laterality_visible"] == (axis != sagittal_axis)
    assert sampler({"image": torch.rand(1, 6, 7)})["laterality_visible"] is True


def test_untagged_volumes_in_hounsfield_units_are_windowed_as_ct():
    ct = torch.full((1, 8, 8, 4), 40.0)
    ct[0, 0] = -1000.0  # air
    out = ModalityIntensityd(keys="image")({"image": ct})["image"]
    level, width = CT_WINDOWS["abdomen"]
    assert float(out[0, 1, 1, 1]) == pytest.approx((40 - (level - width / 2)) / width)
    assert float(out[0, 0, 0, 0]) == 0.0
    mr = torch.linspace(0, 900, 256).view(1, 8, 8, 4)  # no negative values: scaled by percentiles
    scaled = ModalityIntensityd(keys="image")({"image": mr})["image"]
    assert float(scaled.min()) == 0.0 and float(scaled.max()) == 1.0


def test_image_augmentation_reorients_zooms_out_and_keeps_the_size_and_range():
    from medpclip.data.dataset import image_augmentation

    image = torch.zeros(1, 64, 64)
    image[:, 4:40, 8:20] = 1.0  # an off-centre bar: every orientation and zoom moves it
    assert torch.equal(image_augmentation(64, 0.0)(image), image), "chance 0 leaves the image as it is"
    augment = image_augmentation(64, 1.0).set_random_state(0)
    outputs = [augment(image) for _ in range(24)]
    assert all(type(out) is torch.Tensor and out.shape == (1, 64, 64) for out in outputs), "plain tensors, same size"
    assert all(0.0 <= float(out.min()) and float(out.max()) <= 1.0 for out in outputs)
    assert len({int(out.flatten().argmax()) for out in outputs}) > 8, "the bar lands in many places"
    bar_area = [float((out > 0.5).float().sum()) for out in outputs]
    assert min(bar_area) < 0.5 * float(image.sum()), "some images are zoomed out (the anatomy smaller on black)"
    again = image_augmentation(64, 1.0).set_random_state(0)
    assert all(torch.equal(again(image), out) for out in outputs), "the same seed, the same draws"


def test_mr_augmentation_adds_noise_a_bias_field_and_a_coarse_matrix_within_range():
    from medpclip.data.dataset import mr_augmentation

    image = torch.zeros(1, 64, 64)
    image[:, 16:48, 16:48] = torch.linspace(0.3, 1.0, 32)  # a smooth, noise-free head on black, as the template
    assert torch.allclose(mr_augmentation(0.0)(image), image), "chance 0 leaves an image in [0, 1] as it is"
    augment = mr_augmentation(1.0).set_random_state(0)
    outputs = [augment(image) for _ in range(8)]
    assert all(type(out) is torch.Tensor and out.shape == (1, 64, 64) for out in outputs)
    assert all(float(out.min()) >= 0.0 and float(out.max()) <= 1.0 for out in outputs)
    background = torch.stack([out[0, :12, :12] for out in outputs])
    assert float(background.std(dim=(1, 2)).max()) > 0.01, "the black background carries a noise floor"
    inside = torch.stack([out[0, 16:48, 16:48] for out in outputs])
    assert (inside - image[0, 16:48, 16:48]).abs().amax(dim=(1, 2)).min() > 0.02, "every draw changes the head"


def test_region_locations_are_centroids_as_fractions_of_the_volume_wherever_the_slice_was_moved():
    from medpclip.data.dataset import region_locations

    label = torch.zeros(1, 10, 20, 40)
    label[0, 2:4, 6, 10:20] = 3  # on slice 6 of axis 1: x 2..3, z 10..19
    label[0, 4, 6, 10:20] = 5  # a part of 3 (as a tumour of the liver)
    found = region_locations(label, 1, 6, [3, 0, 7], {3: [3, 5]})
    expected = (torch.tensor([3.0, 6.0, 14.5]) + 0.5) / torch.tensor([10.0, 20.0, 40.0])
    torch.testing.assert_close(found[0], expected)
    assert found[1:].isnan().all(), "the whole image and a region absent from the slice have no location"
    assert region_locations(label[:, :, :, 0], None, 0, [3], {}).isnan().all(), "a 2D item has none"
