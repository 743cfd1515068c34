from lib.configs.medpclip import MedPCLIPConfig

__all__ = ["MedPCLIPConfig"]
