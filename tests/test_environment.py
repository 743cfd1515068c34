"""The verified dependency pins hold together in the installed environment."""

from __future__ import annotations

from importlib.metadata import version

from packaging.version import Version


def test_pinned_versions_are_installed():
    assert version("torch").startswith("2.14.1")
    assert version("torchvision").startswith("0.29.1")
    assert version("monai") == "1.6.1"
    assert Version(version("numpy")) < Version("2")


def test_monailabel_imports_with_its_pins():
    import monailabel
    import torch
    import torchvision.ops  # monailabel imports torchvision: its compiled operators must load

    assert monailabel.__version__.startswith("0.8.5")
    assert Version(version("pydicom")) < Version("3")
    assert Version(version("pynetdicom")) < Version("3")
    assert Version(version("dicomweb-client")) < Version("0.60")
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    kept = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert kept.tolist() == [0, 2]
