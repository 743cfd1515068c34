from lib.trainers.finetune import FineTune

__all__ = ["FineTune"]
