"""Metric arithmetic on controlled embeddings, and the interactive Dice protocol on a real (untrained) model."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch

import medpclip.engines.metrics as metrics
from medpclip.data.dataset import RegionBatch
from medpclip.knowledge import default_knowledge_base

KB = default_knowledge_base()
NAMES = ["Precentral_L", "Precentral_R", "Hippocampus_L", "Hippocampus_R", "Cuneus_L", "Cuneus_R"]
CLASSES = [KB.lookup(n, "aal3").id for n in NAMES]


class FakeModel:
    """Returns, for each region, the embedding of ``answer(true class)``: lets the test fix what the model says."""

    def __init__(self, table: torch.Tensor, answer: Callable[[str], str]) -> None:
        self.table, self.answer, self.truth = table, answer, []

    def eval(self) -> None:
        pass

    def encode_image(self, images: torch.Tensor, prompts: object, prefix: object = None) -> SimpleNamespace:
        rows = [self.table[CLASSES.index(self.answer(c))] for c in self.truth.pop(0)]
        return SimpleNamespace(region_embeds=torch.stack(rows)[None])


def batch_of(classes: list[str]) -> RegionBatch:
    r = len(classes)
    return RegionBatch(
        images=torch.zeros(1, 1, 8, 8),
        masks=torch.ones(1, r, 8, 8),
        boxes=torch.zeros(1, r, 4),
        points=torch.zeros(1, r, 1, 2),
        point_labels=torch.ones(1, r, 1, dtype=torch.long),
        texts=[["t"] * r],
        entry_ids=[classes],
        names=[classes],
        modalities=["MR T1"],
    )


@pytest.fixture
def table(monkeypatch):
    table = torch.eye(len(CLASSES), 16)
    monkeypatch.setattr(metrics, "class_embeddings", lambda model, kb, ids, modality=None: table)
    return table


def test_regions_are_named_from_their_masks_or_from_one_click_at_their_centre(table):
    """``prompt="click"`` names each region from one positive click on its deepest pixel instead of its mask."""
    model = FakeModel(table, lambda c: c)
    seen, encode = [], model.encode_image
    model.encode_image = lambda images, prompts, prefix=None: seen.append(prompts) or encode(images, prompts)
    batch = batch_of(CLASSES[:2])
    batch.masks = torch.zeros(1, 2, 8, 8)
    batch.masks[0, 0, 1:4, 1:4] = 1  # centre (2, 2)
    batch.masks[0, 1, 4:7, 4:7] = 1  # centre (5, 5)
    for prompt in ("mask", "click"):
        model.truth = [CLASSES[:2]]
        assert metrics.region_metrics(model, [batch], KB, CLASSES, n_way=4, prompt=prompt)["top1"] == 1.0
    by_mask, by_click = seen
    assert torch.equal(by_mask.masks, batch.masks) and by_mask.points is None
    assert by_click.masks is None and by_click.boxes is None
    assert by_click.points[0, :, 0].tolist() == [[2, 2], [5, 5]] and (by_click.point_labels == 1).all()
    with pytest.raises(ValueError, match="named from one of mask, click"):
        metrics.region_scores(model, [batch], KB, CLASSES, prompt="box")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (lambda c: c, {"top1": 1.0, "left_right": 1.0, "retrieval_r1": 1.0, "top1_4way": 1.0}),
        (lambda c: KB.contralateral(c), {"top1": 0.0, "left_right": 0.0, "retrieval_r1": 0.0, "top5": 1.0}),
    ],
    ids=["right", "mirrored"],
)
def test_region_metrics(table, answer, expected):
    model = FakeModel(table, answer)
    batches = [batch_of(CLASSES[:3]), batch_of(CLASSES[3:])]
    model.truth = [b.entry_ids[0] for b in batches]
    out = metrics.region_metrics(model, batches, KB, CLASSES, n_way=4)
    assert out["regions"] == 6 and out["classes"] == 6 and out["left_right_regions"] == 6
    assert out["top1_chance"] == pytest.approx(1 / 6) and out["top1_4way_chance"] == pytest.approx(0.25)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value), key


def test_nearest_training_slice_baseline(table):
    """The lookup on the nearest training slice is right when the true class comes first among the classes under
    the mask; with nothing (or only other classes) under it, it misses, top-1 and n-way alike."""
    model = FakeModel(table, lambda c: c)
    batch = batch_of(CLASSES[:4])
    first, second, third, fourth = CLASSES[:4]
    batch.nearest_training = [[[first], [second, first], [], [first]]]
    model.truth = [batch.entry_ids[0]]
    out = metrics.region_metrics(model, [batch], KB, CLASSES, n_way=6)
    assert out["nearest_training_top1"] == pytest.approx(0.5)
    assert out["nearest_training_top1_6way"] == pytest.approx(0.5)
    assert out["top1"] == 1.0, "the model's own figures are unchanged"
    model.truth = [batch.entry_ids[0]]
    assert "nearest_training_top1" not in metrics.region_metrics(model, [batch_of(CLASSES[:4])], KB, CLASSES, n_way=6)


def test_naming_by_region_size(table):
    """Each region counts in the size bin of its mask's share of the slice: a model wrong on the one small region
    only is 0.0 there and 1.0 on the medium and large ones."""
    first, second, third = CLASSES[:3]
    batch = batch_of([first, second, third])
    batch.masks = torch.zeros(1, 3, 40, 40)
    batch.masks[0, 0, 0, 0] = 1  # 1 of 1,600 px: small
    batch.masks[0, 1, 0, :10] = 1  # 10 px, 0.6 %: medium
    batch.masks[0, 2] = 1  # the whole slice: large
    model = FakeModel(table, lambda c: KB.contralateral(c) if c == first else c)
    model.truth = [batch.entry_ids[0]]
    out = metrics.region_metrics(model, [batch], KB, CLASSES, n_way=4)
    assert (out["regions_small"], out["regions_medium"], out["regions_large"]) == (1, 1, 1)
    assert (out["top1_4way_small"], out["top1_4way_medium"], out["top1_4way_large"]) == (0.0, 1.0, 1.0)


def test_interactive_dice_protocol(monkeypatch, tiny_model):
    """A decoder that returns the target gives Dice ~1 from the first click; a decoder that returns nothing gives 0.
    The real untrained model runs the same protocol and gives one figure per click count."""
    import torch.nn.functional as F

    images = torch.rand(2, 1, 128, 128)
    targets = torch.zeros(2, 1, 128, 128, dtype=torch.bool)
    targets[:, :, 32:72, 40:88] = True
    perfect = (F.interpolate(targets.float(), size=32, mode="area") * 2 - 1) * 20
    monkeypatch.setattr(tiny_model, "decode_masks", lambda enc, prev_mask_logits=None: perfect)
    assert metrics.interactive_dice(tiny_model, images, targets, clicks=(1, 3))[1] > 0.97
    monkeypatch.setattr(tiny_model, "decode_masks", lambda enc, prev_mask_logits=None: -perfect.abs())
    assert metrics.interactive_dice(tiny_model, images, targets, clicks=(1,)) == {1: 0.0}
    monkeypatch.undo()
    out = metrics.interactive_dice(tiny_model, images, targets, clicks=(1, 3))
    assert set(out) == {1, 3} and all(0 <= v <= 1 for v in out.values())


def test_left_right_counts_only_slices_that_show_the_side(table):
    """A model that always names the contralateral twin is 0.0 on left/right; sagittal slices (where twins look
    alike) are left out of ``left_right`` but kept in ``left_right_all_slices``."""
    model = FakeModel(table, lambda c: c)
    axial, sagittal = batch_of(CLASSES[:3]), batch_of(CLASSES[3:])
    sagittal.laterality_visible = [False]
    model.truth = [axial.entry_ids[0], sagittal.entry_ids[0]]
    out = metrics.region_metrics(model, [axial, sagittal], KB, CLASSES, n_way=4)
    assert out["left_right_regions"] == 3 and out["left_right"] == 1.0 and out["left_right_all_slices"] == 1.0
    model = FakeModel(table, lambda c: c if c in CLASSES[:3] else KB.contralateral(c))
    model.truth = [axial.entry_ids[0], sagittal.entry_ids[0]]
    out = metrics.region_metrics(model, [axial, sagittal], KB, CLASSES, n_way=4)
    assert out["left_right"] == 1.0 and out["left_right_all_slices"] == 0.5


def test_image_zero_shot_names_every_miss_with_its_answer(tiny_model):
    from medpclip.data.intensity import MODALITY_CLASSES

    classes = [KB.lookup(name).id for name in MODALITY_CLASSES.values()]
    images = torch.rand(6, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    labels = [classes[i % len(classes)] for i in range(6)]
    names = [f"image{i}.dcm" for i in range(6)]
    plain = metrics.image_zero_shot(tiny_model, images, labels, KB, classes)
    named = metrics.image_zero_shot(tiny_model, images, labels, KB, classes, names)
    assert "misses" not in plain and named["accuracy"] == plain["accuracy"]
    assert len(named["misses"]) == round((1 - named["accuracy"]) * 6)
    for miss in named["misses"]:
        name, answer = miss.split(": ")
        truth, predicted = answer.split(" -> ")
        assert truth == labels[names.index(name)] and predicted != truth and predicted in classes


def test_naming_errors_average_scores_and_list_left_right_errors(table):
    """``scripts/naming_errors.py``: a model that names every region's twin gets every left/right comparison wrong
    but keeps the truth among the best five; averaged with one that names them right, the twins tie, and a tie counts
    as an error."""
    from dataclasses import replace

    from helpers import load_script

    script = load_script("naming_errors")
    batches = [batch_of(CLASSES[:3]), batch_of(CLASSES[3:])]
    scores = []
    for answer in (lambda c: c, KB.contralateral):
        model = FakeModel(table, answer)
        model.truth = [b.entry_ids[0] for b in batches]
        scores.append(metrics.region_scores(model, batches, KB, CLASSES))
    right, mirrored = (script.error_report(s, CLASSES, KB, shown=10) for s in scores)
    assert right == {"missed_top5": [], "left_right_errors": []}
    assert [name for name, _ in mirrored["left_right_errors"]] == CLASSES
    assert mirrored["missed_top5"] == [], "a twin ranks the truth second: within the best five"
    assert metrics.summarise_regions(scores[1], KB, CLASSES, n_way=4)["left_right"] == 0.0
    mean = replace(scores[0], sims=(scores[0].sims + scores[1].sims) / 2)
    assert len(script.error_report(mean, CLASSES, KB, shown=10)["left_right_errors"]) == 6
