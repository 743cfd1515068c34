"""Medical prior knowledge: structures, findings and modalities with text builders."""

from medpclip.knowledge.base import Entry, KnowledgeBase, LabelMapping, default_knowledge_base, normalise_term

__all__ = ["Entry", "KnowledgeBase", "LabelMapping", "default_knowledge_base", "normalise_term"]
