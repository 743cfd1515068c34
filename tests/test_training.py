"""Training: the step's losses, checkpoints and resume (in process and after a real kill)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import tiny_train_config
from scipy.ndimage import distance_transform_edt
from torch.utils.data import DataLoader

from medpclip.data import RegionSliceDataset, collate_regions, load_datalist
from medpclip.engines import RegionTrainStep, steps
from medpclip.engines.training import latest_checkpoint, train
from medpclip.networks import build_model, load_checkpoint, save_checkpoint
from medpclip.networks.prompts import PRIOR_LOGIT


def _phantom_batch(datalist, num_regions: int = 3, **dataset_options):
    """Two training samples of the phantom with ``num_regions`` regions each, as one batch."""
    dataset = RegionSliceDataset(load_datalist(datalist), num_regions=num_regions, **dataset_options)
    return next(iter(DataLoader(dataset.set_random_state(0), batch_size=2, collate_fn=collate_regions)))


@pytest.mark.parametrize("form", ["mask", "box", "points", "box+points"])
def test_train_step_losses_are_finite_and_move_the_model(phantom_datalist, form):
    batch = _phantom_batch(phantom_datalist)
    torch.manual_seed(0)
    model = build_model("tiny")
    step = RegionTrainStep(forms=(form,), click_rounds=2)
    losses = step.losses(model, batch)
    assert {"region_text"} <= set(losses) and all(torch.isfinite(v) for v in losses.values())
    assert ("mask" in losses) == (form != "mask"), "no mask loss when the prompt is the mask itself"
    sum(losses.values()).backward()
    assert model.region_encoder.fusion["3"].value_gate.grad.abs().sum() > 0


def test_propagation_steps_feed_the_neighbouring_mask_as_the_first_prior(phantom_datalist):
    batch = _phantom_batch(phantom_datalist, prior_offset=3)
    torch.manual_seed(0)
    model = build_model("tiny")
    priors, decode = [], model.decode_masks

    def spy(enc, prev_mask_logits=None):
        priors.append(prev_mask_logits)
        return decode(enc, prev_mask_logits)

    model.decode_masks = spy
    losses = RegionTrainStep(click_rounds=1, propagation=1.0).losses(model, batch)
    assert torch.isfinite(losses["mask"]) and len(priors) == 1
    assert torch.equal(priors[0], (batch.prior_masks * 2 - 1) * PRIOR_LOGIT), "the neighbour's mask as +-8 logits"
    with pytest.raises(ValueError, match="propagation"):
        RegionTrainStep(propagation=1.5)


def test_center_click_steps_prompt_as_the_evaluation_does(phantom_datalist, monkeypatch):
    """With center_click 1 every region is prompted by one click at its centre (and nothing else), and every
    correction click goes to the centre of the largest error, the protocol of interactive_dice."""
    batch = _phantom_batch(phantom_datalist, num_regions=3)
    torch.manual_seed(0)
    model = build_model("tiny")
    seen, modes = [], []
    encode, clicks = model.encode_image, steps.next_clicks

    def encode_spy(images, prompts=None, prefix=None):
        seen.append(prompts)
        return encode(images, prompts, prefix=prefix)

    def clicks_spy(pred, target, mode="center", rng=None):
        modes.append(mode)
        return clicks(pred, target, mode, rng)

    model.encode_image = encode_spy
    monkeypatch.setattr(steps, "next_clicks", clicks_spy)
    losses = RegionTrainStep(click_rounds=3, center_click=1.0, seed=2).losses(model, batch)
    assert torch.isfinite(losses["mask"])
    first = seen[0]
    assert first.boxes is None and first.masks is None and first.points.shape[2] == 1
    assert (first.point_labels == 1).all()
    for b in range(2):
        for r in range(3):  # the click lies inside its region, on its deepest voxel
            mask = batch.masks[b, r].numpy() > 0.5
            depth = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
            i, j = first.points[b, r, 0].long().tolist()
            assert mask[i, j] and depth[i, j] == depth.max()
    assert modes and set(modes) == {"center"}, "correction clicks at the centre of the error"
    with pytest.raises(ValueError, match="center_click"):
        RegionTrainStep(center_click=-0.1)


@pytest.mark.parametrize("chance", ["propagation", "center_click"])
def test_off_chances_draw_nothing_so_older_recipes_keep_their_stream(phantom_datalist, chance):
    """A chance set to 0 takes no number from the step's generator; one that is on (even if it never fires) takes
    one per step."""
    batch = _phantom_batch(phantom_datalist)
    torch.manual_seed(0)
    model = build_model("tiny")

    def draws(value: float) -> int:
        step = RegionTrainStep(seed=3, **{chance: value})
        generator, calls = step.rng, []
        step.rng = SimpleNamespace(
            random=lambda *a: calls.append(1) or generator.random(*a),
            integers=generator.integers,
            permutation=generator.permutation,
        )
        step.losses(model, batch)
        return len(calls)

    assert draws(1e-12) == draws(0.0) + 1


def test_mask_naming_also_names_every_region_from_its_mask(phantom_datalist):
    """With mask_naming 1 a step prompted by boxes adds the naming terms of a second region pass prompted by the
    regions' masks; a step already prompted by masks, or with mask_naming 0, adds nothing."""
    batch = _phantom_batch(phantom_datalist)
    vocabulary = sorted({e for ids in batch.entry_ids for e in ids})
    torch.manual_seed(0)
    model = build_model("tiny")
    seen, encode = [], model.encode_image

    def encode_spy(images, prompts=None, prefix=None):
        seen.append(prompts)
        return encode(images, prompts, prefix=prefix)

    model.encode_image = encode_spy
    losses = RegionTrainStep(forms=("box",), mask_naming=1.0, vocabulary=vocabulary, seed=1).losses(model, batch)
    assert {"region_text_mask", "region_class_mask"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    named = [p for p in seen if p.masks is not None]
    assert len(named) == 1 and torch.equal(named[0].masks, batch.masks) and named[0].boxes is None
    sum(losses.values()).backward()
    assert model.region_encoder.fusion["3"].value_gate.grad.abs().sum() > 0
    model.zero_grad()
    only_masks = RegionTrainStep(forms=("mask",), mask_naming=1.0, vocabulary=vocabulary).losses(model, batch)
    assert not any(k.endswith("_mask") for k in only_masks)
    off = RegionTrainStep(forms=("box",), mask_naming=0.0, vocabulary=vocabulary, seed=1)
    assert not any(k.endswith("_mask") for k in off.losses(model, batch))
    with pytest.raises(ValueError, match="mask_naming"):
        RegionTrainStep(mask_naming=1.5)


def test_mask_regions_train_masks_on_a_subset_with_their_own_targets(phantom_datalist, monkeypatch):
    batch = _phantom_batch(phantom_datalist, num_regions=5)
    torch.manual_seed(0)
    model = build_model("tiny")
    encoded, decoded, targets = [], [], []
    encode, decode, loss = model.encode_image, model.decode_masks, steps.mask_loss

    def encode_spy(images, prompts=None, prefix=None):
        enc = encode(images, prompts, prefix=prefix)
        encoded.append((prompts.boxes, enc.region_tokens))
        return enc

    def decode_spy(enc, prev_mask_logits=None):
        decoded.append(enc.region_tokens)
        return decode(enc, prev_mask_logits)

    def loss_spy(logits, masks):
        targets.append((decoded[-1], masks))
        return loss(logits, masks)

    model.encode_image, model.decode_masks = encode_spy, decode_spy
    monkeypatch.setattr(steps, "mask_loss", loss_spy)
    losses = RegionTrainStep(forms=("box",), click_rounds=3, mask_regions=2, seed=1).losses(model, batch)
    assert torch.isfinite(losses["mask"]) and len(targets) >= 1
    assert encoded[0][0].shape[1] == 5, "the naming terms see every region"
    for tokens, masks in targets:
        assert masks.shape[1] == 2 and tokens.shape[1] == 2
        for b in range(2):
            for k in range(2):  # each target is one of the slice's regions, decoded from that region's own box
                boxes = [x[b, j] for x, t in encoded for j in range(t.shape[1]) if torch.equal(t[b, j], tokens[b, k])]
                pairs = list(zip(batch.masks[b], batch.boxes[b], strict=True))
                assert any(torch.equal(m, masks[b, k]) and torch.equal(x, box) for m, x in pairs for box in boxes)
    with pytest.raises(ValueError, match="mask_regions"):
        RegionTrainStep(mask_regions=0)


def test_vocabulary_and_modality_image_terms_train(phantom_datalist):
    batch = _phantom_batch(phantom_datalist)
    vocabulary = sorted({e for ids in batch.entry_ids for e in ids} | {"liver", "spleen"})
    drawn = []

    def modality_images():
        while True:
            drawn.append(1)
            images = torch.rand(3, 1, 128, 128)
            yield images, ["US", "CR", "CT"], images

    torch.manual_seed(0)
    model = build_model("tiny")
    step = RegionTrainStep(forms=("box",), vocabulary=vocabulary, modality_images=modality_images())
    losses = step.losses(model, batch)
    assert {"region_text", "region_class", "image_class"} <= set(losses) and drawn == [1]
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    losses["image_class"].backward()
    assert model.visual_proj.weight.grad.abs().sum() > 0
    no_vocabulary = RegionTrainStep(forms=("box",)).losses(model, batch)
    assert "region_class" not in no_vocabulary


def test_the_location_term_trains_the_location_head_and_the_region_path(phantom_datalist):
    batch = _phantom_batch(phantom_datalist, locations=True)
    assert batch.locations.shape == (2, 3, 3)
    torch.manual_seed(0)
    model = build_model("tiny", location_head=True)
    losses = RegionTrainStep(forms=("box",), location_weight=2.0).losses(model, batch)
    assert torch.isfinite(losses["region_location"]) and losses["region_location"] > 0
    losses["region_location"].backward()
    assert model.location_head[0].weight.grad.abs().sum() > 0
    assert model.visual_proj.weight.grad.abs().sum() > 0, "the target shapes the region embedding itself"
    assert "region_location" not in RegionTrainStep(forms=("box",)).losses(model, batch)
    with pytest.raises(ValueError, match="needs a model with a location_head"):
        RegionTrainStep(forms=("box",), location_weight=1.0).losses(build_model("tiny"), batch)
    with pytest.raises(ValueError, match="location_weight should be >= 0"):
        RegionTrainStep(location_weight=-1.0)


def test_a_location_weight_builds_the_model_with_its_head(tmp_path, phantom_datalist):
    final = train(tiny_train_config(tmp_path, phantom_datalist, iterations=1, location_weight=1.0))
    model = load_checkpoint(final)
    assert model.config["location_head"] is True and model.location_head is not None
    assert build_model("tiny").location_head is None, "the presets and shipped checkpoints have no head"


def test_location_errors_split_depth_from_the_plane_and_refuse_a_model_without_a_head(
    tmp_path, phantom_datalist, monkeypatch
):
    """``scripts/location_errors.py``: a head that always answers the middle of the volume scores exactly the
    always-the-middle depth error, and a checkpoint without a head is a clear exit 2."""
    from helpers import load_script

    script = load_script("location_errors")
    model = build_model("tiny", location_head=True).eval()
    with torch.no_grad():  # the last layer answers 0.5 whatever the embedding
        model.location_head[2].weight.zero_()
        model.location_head[2].bias.fill_(0.5)
    dataset = RegionSliceDataset(load_datalist(phantom_datalist), num_regions=3, locations=True).set_random_state(0)
    errors = script.location_errors(model, dataset, samples=5, batch_size=2)
    assert errors["depth"] == pytest.approx(errors["depth_if_middle"]) and 0 < errors["depth"] < 0.5
    assert 0 < errors["in_plane"] < 0.5
    plain = save_checkpoint(build_model("tiny"), tmp_path / "plain.pt")
    monkeypatch.setattr(sys, "argv", ["location_errors.py", "--checkpoint", str(plain)])
    with pytest.raises(SystemExit) as stop:
        script.main()
    assert stop.value.code == 2


def test_distillation_holds_the_modality_images_to_the_teacher(phantom_datalist):
    batch = _phantom_batch(phantom_datalist)

    def modality_images(augmented: bool = False):
        while True:
            originals = torch.rand(3, 1, 128, 128)
            yield (originals.flip(-1) if augmented else originals), ["US", "CR", "CT"], originals

    torch.manual_seed(0)
    model, other = build_model("tiny"), build_model("tiny")
    teacher = build_model("tiny")
    teacher.load_state_dict(model.state_dict())
    same = RegionTrainStep(forms=("box",), modality_images=modality_images(), teacher=teacher, distill_weight=2.0)
    assert same.losses(model, batch)["image_distill"].abs() < 1e-5, "a student equal to its teacher loses nothing"
    seen_augmented = RegionTrainStep(
        forms=("box",), modality_images=modality_images(augmented=True), teacher=teacher, distill_weight=2.0
    )
    assert seen_augmented.losses(model, batch)["image_distill"] > 1e-4, "the teacher sees the images before augmenting"
    moved = RegionTrainStep(forms=("box",), modality_images=modality_images(), teacher=other, distill_weight=2.0)
    loss = moved.losses(model, batch)["image_distill"]
    assert 0 < loss <= 2 * 2
    loss.backward()
    assert model.vision.patch_embed.proj.weight.grad.abs().sum() > 0, "the student's tower is pulled to the teacher"
    assert all(p.grad is None and not p.requires_grad for p in other.parameters()), "the teacher does not train"
    with pytest.raises(ValueError, match="teacher"):
        RegionTrainStep(distill_weight=1.0, modality_images=modality_images())


def test_modality_batches_draw_every_family_and_skip_unreadable_files(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from medpclip.engines import training

    items = []
    for n, modality in enumerate(["CT"] * 6 + ["US", "CR", "US"]):
        path = tmp_path / f"{n}.png"
        Image.fromarray((np.random.default_rng(n).random((40, 40)) * 255).astype(np.uint8)).save(path)
        items.append({"image": str(path), "modality": modality, "text": f"a {modality} image"})
    datalist = tmp_path / "modalities.json"
    datalist.write_text(json.dumps({"training": items, "validation": []}))
    readable = training.ImageSliceDataset.__getitem__

    def pixels_fail_for_the_last(dataset, index):  # as ITK fails on 16-bit palette-colour frames after their header
        if dataset.items[index]["image"].endswith("8.png"):
            raise RuntimeError("applying transform LoadImaged")
        return readable(dataset, index)

    monkeypatch.setattr(training.ImageSliceDataset, "__getitem__", pixels_fail_for_the_last)
    images, modalities, originals = next(training._modality_batches(str(datalist), 60, 64, seed=0))
    assert originals is images, "without augmentation the originals are the images"
    assert images.shape == (60, 1, 64, 64)
    counts = {m: modalities.count(m) for m in ("CT", "US", "CR")}
    assert all(c >= 10 for c in counts.values()), f"families are drawn about equally: {counts}"
    assert "skipping" in capsys.readouterr().out and "8.png" not in str(modalities)


def test_modality_batches_replace_xray_and_ultrasound_draws_with_simulated_images(tmp_path):
    from PIL import Image

    from medpclip.engines import training

    items = []
    for n, modality in enumerate(["CT", "CR", "US"]):
        path = tmp_path / f"{n}.png"
        Image.fromarray(np.full((16, 16), 255, np.uint8)).save(path)
        items.append({"image": str(path), "modality": modality, "text": f"a {modality} image"})
    datalist = tmp_path / "modalities.json"
    datalist.write_text(json.dumps({"training": items, "validation": []}))

    def simulated(family: str, size: int) -> torch.Tensor:
        return torch.full((1, size, size), {"XR": 0.25, "US": 0.75}[family])

    simulated.FAMILIES = ("XR", "US")
    batches = training._modality_batches(str(datalist), 30, 16, seed=0, synthetic=simulated, synthetic_share=1.0)
    images, modalities, _ = next(batches)
    values = {
        m: {float(v) for v, mm in zip(images[:, 0, 0, 0], modalities, strict=True) if mm == m}
        for m in "CT CR US".split()
    }
    assert values["CR"] == {0.25} and values["US"] == {0.75}, "X-ray and ultrasound draws are all simulated"
    assert values["CT"] and values["CT"].isdisjoint({0.25, 0.75}), "CT draws are never simulated"


def _ramp_datalist(folder: Path, modalities: list[str]) -> Path:
    """A modality datalist of one 32 x 32 intensity-ramp PNG per modality, all in its training split."""
    from PIL import Image

    items = []
    for n, modality in enumerate(modalities):
        path = folder / f"{n}.png"
        Image.fromarray(np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))).save(path)
        items.append({"image": str(path), "modality": modality, "text": f"a {modality} image"})
    datalist = folder / "modalities.json"
    datalist.write_text(json.dumps({"training": items, "validation": []}))
    return datalist


def test_modality_batches_augment_real_and_simulated_images_alike(tmp_path):
    from medpclip.engines import training

    datalist = _ramp_datalist(tmp_path, ["CT", "US"])

    def simulated(family: str, size: int) -> torch.Tensor:
        return torch.linspace(0, 1, size).expand(1, size, size).transpose(1, 2).contiguous()

    simulated.FAMILIES = ("XR", "US")

    def batch(augment: float) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        batches = training._modality_batches(
            str(datalist), 40, 32, seed=0, synthetic=simulated, synthetic_share=1.0, augment=augment
        )
        return next(batches)

    plain, modalities, _ = batch(0.0)
    augmented, same_draws, originals = batch(1.0)
    assert same_draws == modalities, "augmentation changes the images, not which are drawn"
    assert torch.equal(originals, plain), "the originals are the images before augmentation"
    changed = (plain - augmented).abs().flatten(1).amax(1) > 0.1
    for family in ("CT", "US"):  # CT: the real file; US: simulated
        picked = torch.tensor([m == family for m in modalities])
        assert picked.any() and changed[picked].float().mean() > 0.5, f"{family} images are augmented"


def test_modality_batches_give_mr_images_their_own_augmentation(tmp_path):
    from medpclip.engines import training

    datalist = _ramp_datalist(tmp_path, ["CT", "MR"])
    images, modalities, originals = next(training._modality_batches(str(datalist), 40, 32, seed=0, mr_augment=1.0))
    changed = (images - originals).abs().flatten(1).amax(1) > 0.02
    is_mr = torch.tensor([m == "MR" for m in modalities])
    assert is_mr.any() and (~is_mr).any()
    assert changed[is_mr].all() and not changed[~is_mr].any(), "MR images alone get the MR augmentation"


def test_modality_batches_augment_reproducibly_from_the_seed(tmp_path):
    from medpclip.engines import training

    datalist = _ramp_datalist(tmp_path, ["CT", "MR"])

    def draws(seed: int) -> torch.Tensor:
        batches = training._modality_batches(str(datalist), 16, 32, seed=seed, augment=0.5, mr_augment=0.5)
        return torch.cat([next(batches)[0] for _ in range(2)])

    torch.manual_seed(1)  # the global seed differs between the calls: only the given seed may decide the draws
    first = draws(3)
    torch.manual_seed(2)
    np.random.seed(2)
    assert torch.equal(first, draws(3)), "the same seed gives the same augmented images"
    assert not torch.equal(first, draws(4)), "another seed gives other augmentations"


@pytest.mark.parametrize(("file_share", "expected"), [(0.0, 6 / 8), (1.0, 1 / 3), (0.5, 0.5 * 6 / 8 + 0.5 / 3)])
def test_modality_batches_share_a_familys_draws_between_files_or_items(tmp_path, file_share, expected):
    import nibabel as nib

    from medpclip.engines import training

    volume = tmp_path / "volume.nii.gz"  # six slices of one volume beside two single-slice files, all MR
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 6)).astype(np.float32), np.eye(4)), volume)
    items = [{"image": str(volume), "modality": "MR", "text": "an MR image"} for _ in range(6)]
    for n in range(2):
        path = tmp_path / f"{n}.nii.gz"
        nib.save(nib.Nifti1Image(np.random.default_rng(n + 1).random((16, 16)).astype(np.float32), np.eye(4)), path)
        items.append({"image": str(path), "modality": "MR", "text": "an MR image"})
    datalist = tmp_path / "modalities.json"
    datalist.write_text(json.dumps({"training": items, "validation": []}))
    seen = []
    dataset_item = training.ImageSliceDataset.__getitem__

    def record(dataset, index):
        seen.append(dataset.items[index]["image"])
        return dataset_item(dataset, index)

    batches = training._modality_batches(str(datalist), 4000, 16, seed=0, file_share=file_share)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training.ImageSliceDataset, "__getitem__", record)
        next(batches)
    share = seen.count(str(volume)) / len(seen)
    assert abs(share - expected) < 0.03, f"the volume's share of the draws: {share:.3f}, expected {expected:.3f}"


def test_resume_restores_iteration_and_optimizer(tmp_path, phantom_datalist, capsys):
    first = train(tiny_train_config(tmp_path, phantom_datalist, iterations=3))
    checkpoint = latest_checkpoint(first.parent / "checkpoints")
    assert checkpoint.name == "checkpoint_3.pt"
    state = torch.load(checkpoint, weights_only=True)
    assert state["trainer"]["iteration"] == 3
    assert max(s["step"] for s in state["optimizer"]["state"].values()) == 3  # the mask head skips mask-prompt steps
    final = train(tiny_train_config(tmp_path, phantom_datalist, iterations=5))
    assert "resumed from" in capsys.readouterr().out
    state = torch.load(latest_checkpoint(final.parent / "checkpoints"), weights_only=True)
    assert state["trainer"]["iteration"] == 5
    assert max(s["step"] for s in state["optimizer"]["state"].values()) == 5, "Adam moments continue, not restart"
    assert state["scheduler"]["last_epoch"] == 5
    assert load_checkpoint(final).config["vision"] == "tiny"


def test_weight_average_becomes_the_model_and_continues_after_resume(tmp_path, phantom_datalist):
    def state(iteration: int) -> dict:
        return torch.load(tmp_path / "run" / "checkpoints" / f"checkpoint_{iteration}.pt", weights_only=True)

    def averaged(before: dict, now: dict) -> dict:  # momentum 0.5: each step weighs as much as all before it
        return {k: 0.5 * before["ema_model"][k] + 0.5 * now["model"][k] for k in now["model"]}

    final = train(tiny_train_config(tmp_path, phantom_datalist, iterations=3, ema_momentum=0.5))
    two, three = state(2), state(3)
    name = "visual_proj.weight"
    assert not torch.equal(three["ema_model"][name], three["model"][name])
    assert torch.allclose(three["ema_model"][name], averaged(two, three)[name], atol=1e-6)
    shipped = load_checkpoint(final).state_dict()
    assert all(torch.equal(shipped[k], v) for k, v in three["ema_model"].items()), "model.pt is the average"
    train(tiny_train_config(tmp_path, phantom_datalist, iterations=4, ema_momentum=0.5))
    expected = averaged(three, state(4))
    assert all(torch.allclose(state(4)["ema_model"][k], expected[k], atol=1e-6) for k in expected), "not restarted"


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(tmp_path, phantom_datalist):
    config = tiny_train_config(tmp_path, phantom_datalist, iterations=400, checkpoint_every=2)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(config.__dict__))
    command = [sys.executable, "-m", "medpclip.cli", "train", "--config", str(recipe)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoints = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not list(checkpoints.glob("checkpoint_[4-9]*.pt")):
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = torch.load(latest_checkpoint(checkpoints), weights_only=True)["trainer"]["iteration"]
    assert killed_at >= 4
    done = subprocess.run([*command, "--iterations", str(killed_at + 2)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"at iteration {killed_at}" in done.stdout
    state = torch.load(latest_checkpoint(checkpoints), weights_only=True)
    assert state["trainer"]["iteration"] == killed_at + 2
    assert max(s["step"] for s in state["optimizer"]["state"].values()) == killed_at + 2


def test_evaluate_reports_registered_and_displaced_figures(tmp_path, phantom_datalist):
    from medpclip.cli import main
    from medpclip.networks import save_checkpoint

    torch.manual_seed(0)
    checkpoint = save_checkpoint(build_model("tiny"), tmp_path / "model.pt")
    recipe = tmp_path / "recipe.json"
    recipe.write_text(
        json.dumps({"val_datalists": [str(phantom_datalist)], "train_datalists": [str(phantom_datalist)]})
    )
    out = tmp_path / "metrics.json"
    args = ["evaluate", "--config", str(recipe), "--checkpoint", str(checkpoint), "--samples", "4"]
    assert main([*args, "--out", str(out)]) == 0
    registered = json.loads(out.read_text())
    assert 0 <= registered["datalist/nearest_training_top1_10way"] <= 1, "the training-memory baseline"
    assert "datalist/position_only_top1" not in registered
    assert main([*args, "--displaced", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    name = "datalist"  # no label_source in the phantom datalist: the set is named after the file
    assert metrics["displaced"] is True and metrics[f"{name}/regions"] > 0
    assert 0 <= metrics[f"{name}/position_only_top1"] <= 1, "displaced samples carry the atlas-lookup baseline"
    assert f"{name}/nearest_training_top1" not in metrics
    assert 0 <= metrics[f"{name}/top1"] <= 1 and metrics[f"{name}/top1_chance"] > 0
    assert main([*args, "--split", "training", "--out", str(out)]) == 0
    trained = json.loads(out.read_text())
    assert trained["split"] == "training" and registered["split"] == "validation"
    assert trained["datalist/nearest_training_top1_10way"] == 1.0, (
        "on training slices the lookup finds the slice itself"
    )
    assert registered["naming_prompt"] == "mask"
    assert main([*args, "--name-from", "click", "--out", str(out)]) == 0
    clicked = json.loads(out.read_text())
    assert clicked["naming_prompt"] == "click" and clicked["datalist/regions"] == registered["datalist/regions"]
    assert clicked["datalist/top1_10way"] != registered["datalist/top1_10way"] or (
        clicked["datalist/retrieval_r1"] != registered["datalist/retrieval_r1"]
    ), "another prompt gives other region embeddings"
    assert registered["naming_views"] == 1
    assert main([*args, "--naming-views", "3", "--out", str(out)]) == 0
    viewed = json.loads(out.read_text())
    assert viewed["naming_views"] == 3 and viewed["datalist/regions"] == registered["datalist/regions"]


def test_evaluate_on_named_datalists_instead_of_the_recipes(tmp_path, phantom_datalist):
    """``--datalist`` replaces the recipe's datalists (and drops its modality images); a list-level ``name``
    prefixes its metrics, so two datalists of one label source are told apart."""
    from medpclip.cli import main
    from medpclip.networks import save_checkpoint

    torch.manual_seed(0)
    checkpoint = save_checkpoint(build_model("tiny"), tmp_path / "model.pt")
    named = phantom_datalist.parent / "named_datalist.json"
    named.write_text(json.dumps({**json.loads(phantom_datalist.read_text()), "name": "second_image"}))
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"val_datalists": ["missing.json"], "train_datalists": ["missing.json"]}))
    out = tmp_path / "metrics.json"
    args = ["evaluate", "--config", str(recipe), "--checkpoint", str(checkpoint), "--samples", "4", "--out", str(out)]
    assert main([*args, "--datalist", str(phantom_datalist), "--datalist", str(named)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["datalist/regions"] > 0 and metrics["second_image/regions"] == metrics["datalist/regions"]
    assert not any(key.startswith("modality/") for key in metrics)


def test_training_with_geometric_augmentation_runs(tmp_path, phantom_datalist):
    final = train(tiny_train_config(tmp_path, phantom_datalist, iterations=2, displace=1.0))
    assert final.is_file()
    assert json.loads((final.parent / "config.json").read_text())["displace"] == 1.0


def test_sagittal_regions_do_not_use_their_twin_as_a_negative(monkeypatch):
    """On a sagittal slice "left X" and "right X" look the same: they share one class key in the InfoNCE and the
    contralateral twin is not drawn as a hard negative; on other slices the twin stays a separate class."""
    import medpclip.engines.steps as steps
    from medpclip.data.dataset import RegionBatch
    from medpclip.knowledge import default_knowledge_base

    kb = default_knowledge_base()
    left, right = kb.lookup("Precentral_L", "aal3").id, kb.lookup("Precentral_R", "aal3").id
    seen = {}
    monkeypatch.setattr(steps, "contrastive_loss", lambda e, t, classes, s: seen.setdefault("classes", classes))
    model = SimpleModel()
    for visible in (True, False):
        seen.clear()
        batch = RegionBatch(
            images=torch.zeros(1, 1, 8, 8),
            masks=torch.ones(1, 2, 8, 8),
            boxes=torch.zeros(1, 2, 4),
            points=torch.zeros(1, 2, 1, 2),
            point_labels=torch.ones(1, 2, 1, dtype=torch.long),
            texts=[["left precentral gyrus", "right precentral gyrus"]],
            entry_ids=[[left, right]],
            names=[["Precentral_L", "Precentral_R"]],
            modalities=["MR T1"],
            laterality_visible=[visible],
        )
        step = RegionTrainStep(knowledge=kb, hard_negatives=4)
        step._region_text(model, torch.zeros(2, 4), batch)
        own, negatives = seen["classes"][:2], seen["classes"][2:]
        if visible:
            assert own == [left, right] and right in negatives[:4]
        else:
            assert own[0] == own[1] and left not in negatives and right not in negatives


class SimpleModel:
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return torch.zeros(len(texts), 4)

    logit_scale = torch.tensor(1.0)


def test_train_repeats_list_each_datalists_items_that_many_times(phantom_datalist, tmp_path):
    from medpclip.engines import training

    other = tmp_path / "other.json"
    data = json.loads(phantom_datalist.read_text())
    data["training"] = data["training"][:1]
    for item in data["training"] + data["validation"]:  # absolute paths: the copy lies in another folder
        item["image"], item["label"] = (str(phantom_datalist.parent / item[k]) for k in ("image", "label"))
    other.write_text(json.dumps(data))
    once = load_datalist(phantom_datalist, "training")
    items = training._training_items([str(phantom_datalist), str(other)], [3, 1])
    assert len(items) == 3 * len(once) + 1
    assert items[: 3 * len(once)] == once * 3 and items[-1]["slices"] == once[0]["slices"]
    assert training._training_items([str(phantom_datalist)], None) == once
    for bad in ([0, 1], [1], [1.5, 1], [True, 1]):
        with pytest.raises(ValueError, match="train_repeats"):
            training._training_items([str(phantom_datalist), str(other)], bad)


def test_fine_tuning_keeps_frozen_parameters_and_trains_the_rest(tmp_path, phantom_datalist):
    from medpclip.networks import save_checkpoint

    torch.manual_seed(0)
    start = save_checkpoint(build_model("tiny"), tmp_path / "start.pt")
    frozen = ["vision.", "visual_proj."]
    final = train(
        tiny_train_config(tmp_path, phantom_datalist, iterations=2, init_checkpoint=str(start), frozen=frozen)
    )
    before, after = load_checkpoint(start).state_dict(), load_checkpoint(final).state_dict()
    kept = [k for k in before if k.startswith(tuple(frozen))]
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)
    moved = [k for k in before if not k.startswith(tuple(frozen)) and not torch.equal(before[k], after[k])]
    assert any(k.startswith("region_encoder.") for k in moved), "the prompt path still trains"


def test_a_naming_only_stage_leaves_the_mask_decoder_untouched(tmp_path, phantom_datalist):
    from medpclip.networks import save_checkpoint

    torch.manual_seed(0)
    start = save_checkpoint(build_model("tiny"), tmp_path / "start.pt")
    config = tiny_train_config(tmp_path, phantom_datalist, iterations=2, init_checkpoint=str(start), mask_weight=0.0)
    before, after = load_checkpoint(start).state_dict(), load_checkpoint(train(config)).state_dict()
    decoder = [k for k in before if k.startswith("mask_decoder.")]
    assert decoder and all(torch.equal(before[k], after[k]) for k in decoder), "no mask loss, no decoder update"
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("region_encoder."))


def test_a_distilled_second_stage_holds_to_its_starting_checkpoint(tmp_path, phantom_datalist, monkeypatch):
    from PIL import Image

    from medpclip.networks import save_checkpoint

    items = []
    for n, modality in enumerate(["CT", "US", "CR"]):
        Image.fromarray((np.random.default_rng(n).random((40, 40)) * 255).astype(np.uint8)).save(tmp_path / f"{n}.png")
        items.append({"image": str(tmp_path / f"{n}.png"), "modality": modality, "text": f"a {modality} image"})
    modalities = tmp_path / "modalities.json"
    modalities.write_text(json.dumps({"training": items, "validation": items[:1]}))
    torch.manual_seed(0)
    start = save_checkpoint(build_model("tiny"), tmp_path / "start.pt")
    teachers, distill = [], RegionTrainStep._distill

    def spy(step, images, global_embeds):
        teachers.append(step.teacher)
        return distill(step, images, global_embeds)

    monkeypatch.setattr(RegionTrainStep, "_distill", spy)
    changes = dict(init_checkpoint=str(start), modality_datalist=str(modalities), modality_batch=2, distill_weight=1.0)
    final = train(tiny_train_config(tmp_path, phantom_datalist, iterations=2, **changes))
    assert len(teachers) == 2 and teachers[0] is teachers[1]
    start_state = load_checkpoint(start).state_dict()
    assert all(torch.equal(v, start_state[k]) for k, v in teachers[0].state_dict().items()), "the teacher is the start"
    assert not all(torch.equal(v, start_state[k]) for k, v in load_checkpoint(final).state_dict().items())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"distill_weight": 1.0}, "needs init_checkpoint"),
        ({"distill_weight": -1.0, "init_checkpoint": "a.pt", "modality_datalist": "m.json"}, ">= 0"),
        ({"distill_weight": "1", "init_checkpoint": "a.pt", "modality_datalist": "m.json"}, "a number"),
        ({"distill_weight": 1.0, "init_checkpoint": "a.pt"}, "modality_datalist"),
        ({"mask_weight": -0.5}, "mask_weight must be >= 0"),
        ({"mask_weight": False}, "mask_weight must be a number"),
        ({"mask_regions": 0}, "mask_regions must be a whole number"),
        ({"mask_regions": 2.5}, "mask_regions must be a whole number"),
        ({"location_weight": -1.0}, "location_weight must be >= 0"),
        ({"location_weight": True}, "location_weight must be a number"),
        ({"drop_path": 1.5}, "drop_path must be a number from 0 to 1"),
    ],
)
def test_bad_loss_weights_and_settings_are_refused(tmp_path, phantom_datalist, changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_train_config(tmp_path, phantom_datalist, **changes)


def test_model_options_replace_the_presets_settings(tmp_path, phantom_datalist):
    final = train(tiny_train_config(tmp_path, phantom_datalist, iterations=1, model_options={"dense_image": True}))
    assert load_checkpoint(final).config["dense_image"] is True
    with pytest.raises(ValueError, match="model_options must map model settings"):
        tiny_train_config(tmp_path, phantom_datalist, model_options={"dense_imgae": True})


@pytest.mark.parametrize(("frozen", "message"), [(["visoin."], "names no parameter"), ("vision.", "list of")])
def test_a_frozen_prefix_that_is_a_typo_stops_the_run(tmp_path, phantom_datalist, frozen, message):
    with pytest.raises(ValueError, match=message):
        train(tiny_train_config(tmp_path, phantom_datalist, iterations=1, frozen=frozen))
