"""MedP-CLIP: a region-aware medical vision-language model, MONAI-native."""

__version__ = "0.1.0"


def bundle_dir() -> str:
    """The MONAI Bundle folder of this source tree (``bundle/``): the default ``bundle_root`` of its configs, so
    they run from any working directory. A bundle copied elsewhere is run with ``--bundle_root <its folder>``."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent.parent / "bundle")
