from lib.infers.classification import RegionLabelling, ZeroShotClassification
from lib.infers.segmentation import InteractiveSegmentation

__all__ = ["InteractiveSegmentation", "RegionLabelling", "ZeroShotClassification"]
