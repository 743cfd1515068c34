"""Training and evaluation engines (MONAI/ignite), simulated interaction and metrics."""

from medpclip.engines.interaction import add_clicks, next_clicks
from medpclip.engines.steps import RegionTrainStep

__all__ = ["RegionTrainStep", "add_clicks", "next_clicks"]
