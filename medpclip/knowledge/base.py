"""The knowledge base: anatomical structures, findings and modalities with names, synonyms, descriptions,
hierarchy and laterality, read from ``knowledge_base.yaml`` (sources cited in that file).

Used for training captions, zero-shot prompt ensembles, hard negatives and dataset label mapping.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = ["Entry", "KnowledgeBase", "LabelMapping", "default_knowledge_base", "normalise_term"]

KINDS = ("structure", "lesion", "modality")
DEFAULT_PATH = Path(__file__).with_name("knowledge_base.yaml")

# spelling variants users and datasets write; the knowledge base uses British spelling
_SPELLING = {
    "tumor": "tumour",
    "tumors": "tumours",
    "hemorrhage": "haemorrhage",
    "edema": "oedema",
    "esophagus": "oesophagus",
    "hematoma": "haematoma",
    "anemia": "anaemia",
}


def normalise_term(term: str) -> str:
    """Lower case, ``_``/``-`` as spaces, single spaces, British spelling: ``"Liver_Tumor"`` -> ``"liver tumour"``."""
    words = re.sub(r"[\s_\-]+", " ", term.strip().lower()).split(" ")
    return " ".join(_SPELLING.get(w, w) for w in words if w)


@dataclass(frozen=True)
class Entry:
    """One structure, lesion or modality."""

    id: str
    name: str
    kind: str
    system: str
    parent: str | None
    laterality: str | None
    synonyms: tuple[str, ...]
    description: str
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Canonical name first, then synonyms."""
        return (self.name, *self.synonyms)


@dataclass
class LabelMapping:
    """Result of :meth:`KnowledgeBase.map_labels`: ``mapped`` label -> entry id, and the names left ``unmapped``."""

    mapped: dict[str, str]
    unmapped: list[str]

    def raise_if_unmapped(self) -> None:
        if self.unmapped:
            raise ValueError(
                f"{len(self.unmapped)} label(s) are not in the knowledge base: {', '.join(self.unmapped)}."
            )


class KnowledgeBase:
    """Validated collection of :class:`Entry` objects (see :meth:`load`)."""

    def __init__(self, entries: Iterable[Entry], sources: dict[str, str]) -> None:
        self.sources = dict(sources)
        self._entries: dict[str, Entry] = {}
        problems = []
        for entry in entries:
            if entry.id in self._entries:
                problems.append(f"duplicate id {entry.id!r}")
            self._entries[entry.id] = entry
        self._children: dict[str, list[str]] = {}
        self._terms: dict[str, str] = {}
        self._labels: dict[tuple[str, str], str] = {}
        self._label_names: dict[str, set[str]] = {}
        for entry in self._entries.values():
            problems += self._check(entry)
            if entry.parent:
                self._children.setdefault(entry.parent, []).append(entry.id)
            for term in (entry.id, *entry.names):
                self._terms.setdefault(normalise_term(term), entry.id)
            for source, names in entry.labels.items():
                for name in names:
                    if (source, name) in self._labels:
                        problems.append(f"label {source}:{name} is given to two entries")
                    self._labels[(source, name)] = entry.id
                    self._label_names.setdefault(name, set()).add(entry.id)
        if problems:
            raise ValueError("knowledge base is invalid: " + "; ".join(problems[:20]))

    def _check(self, entry: Entry) -> list[str]:
        problems = []
        if entry.kind not in KINDS:
            problems.append(f"{entry.id}: kind {entry.kind!r} not in {KINDS}")
        if entry.parent is not None and entry.parent not in self._entries:
            problems.append(f"{entry.id}: parent {entry.parent!r} does not exist")
        for side, other in (("_left", "_right"), ("_right", "_left")):
            if entry.id.endswith(side) and entry.id[: -len(side)] + other not in self._entries:
                problems.append(f"{entry.id}: no {other[1:]} counterpart")
        unknown = set(entry.sources) - set(self.sources)
        if unknown:
            problems.append(f"{entry.id}: unknown sources {sorted(unknown)}")
        seen, node = set(), entry.id
        while node is not None and node in self._entries:
            if node in seen:
                problems.append(f"{entry.id}: parent cycle")
                break
            seen.add(node)
            node = self._entries[node].parent
        return problems

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> KnowledgeBase:
        """Read a knowledge-base YAML file (``version``, ``sources``, ``entries``)."""
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        entries = [
            Entry(
                id=e["id"],
                name=e["name"],
                kind=e["kind"],
                system=e.get("system") or "",
                parent=e.get("parent"),
                laterality=e.get("laterality"),
                synonyms=tuple(e.get("synonyms") or ()),
                description=e.get("description") or "",
                labels={k: tuple(v) for k, v in (e.get("labels") or {}).items()},
                sources=tuple(e.get("sources") or ()),
            )
            for e in data["entries"]
        ]
        return cls(entries, data.get("sources") or {})

    # --- lookup -------------------------------------------------------------------------------------------
    def __getitem__(self, entry_id: str) -> Entry:
        return self._entries[entry_id]

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def lookup(self, term: str, source: str | None = None) -> Entry | None:
        """The entry a dataset label (``source``-specific, exact) or a free-text term (id, name, synonym) means."""
        if source is not None and (source, term) in self._labels:
            return self._entries[self._labels[(source, term)]]
        entry_id = self._terms.get(normalise_term(term))
        if entry_id is not None:
            return self._entries[entry_id]
        matches = self._label_names.get(term, set())
        if len(matches) == 1:  # a label name of any source, if it is unambiguous
            return self._entries[next(iter(matches))]
        return None

    def map_labels(self, names: Iterable[str], source: str | None = None) -> LabelMapping:
        """Map dataset label names to entry ids; names that match nothing are reported, never guessed."""
        mapped, unmapped = {}, []
        for name in names:
            entry = self.lookup(name, source)
            if entry is None:
                unmapped.append(name)
            else:
                mapped[name] = entry.id
        return LabelMapping(mapped, unmapped)

    # --- hierarchy ----------------------------------------------------------------------------------------
    def ancestors(self, entry_id: str) -> list[str]:
        """Parent, grandparent, … up to the root."""
        chain, node = [], self._entries[entry_id].parent
        while node is not None:
            chain.append(node)
            node = self._entries[node].parent
        return chain

    def children(self, entry_id: str) -> list[str]:
        return list(self._children.get(entry_id, []))

    def siblings(self, entry_id: str) -> list[str]:
        """Entries of the same kind under the same parent (not the entry itself)."""
        entry = self._entries[entry_id]
        if entry.parent is None:
            return [e.id for e in self if e.parent is None and e.kind == entry.kind and e.id != entry_id]
        return [c for c in self.children(entry.parent) if c != entry_id and self._entries[c].kind == entry.kind]

    def contralateral(self, entry_id: str) -> str | None:
        """The same structure on the other side, if there is one."""
        for side, other in (("_left", "_right"), ("_right", "_left")):
            if entry_id.endswith(side):
                return entry_id[: -len(side)] + other
        return None

    def hard_negatives(self, entry_id: str, limit: int | None = None) -> list[str]:
        """Confusable entries, hardest first: the contralateral structure, siblings, then the contralateral
        structure's siblings and the parent's siblings' children (cousins)."""
        out: list[str] = []

        def add(ids: Iterable[str]) -> None:
            out.extend(i for i in ids if i != entry_id and i not in out)

        other = self.contralateral(entry_id)
        add([other] if other else [])
        add(self.siblings(entry_id))
        if other:
            add(self.siblings(other))
        parent = self._entries[entry_id].parent
        if parent is not None:
            for uncle in self.siblings(parent):
                add(self.children(uncle))
        return out[:limit] if limit is not None else out

    # --- text ---------------------------------------------------------------------------------------------
    def prompt_ensemble(self, entry_id: str, modality: str | None = None) -> list[str]:
        """Zero-shot prompts for one class: every name x every template, in a fixed order."""
        entry = self._entries[entry_id]
        if entry.kind == "modality":
            templates = MODALITY_TEMPLATES
        else:
            templates = ENSEMBLE_TEMPLATES_MODALITY if modality else ENSEMBLE_TEMPLATES
        return [t.format(name=name, modality=modality) for name in entry.names for t in templates]

    def _caption_templates(self, entry: Entry, modality: str | None) -> list[str]:
        if entry.kind == "modality":  # an image-level caption: the image is a CT, not "this region is the CT"
            return MODALITY_TEMPLATES + ["{name}: {description}"]
        return CAPTION_TEMPLATES + (CAPTION_TEMPLATES_MODALITY if modality else [])

    def caption_space(self, entry_id: str, modality: str | None = None) -> list[str]:
        """Every caption :meth:`captions` can draw for this entry and modality (to pre-encode them in bulk)."""
        entry = self._entries[entry_id]
        description = entry.description.rstrip(".") if entry.description else entry.name
        return list(
            dict.fromkeys(
                t.format(name=name, modality=modality, description=description)
                for t in self._caption_templates(entry, modality)
                for name in entry.names
            )
        )

    def captions(self, entry_id: str, *, modality: str | None = None, n: int = 1, seed: int | None = None) -> list[str]:
        """``n`` training captions drawn (deterministically under ``seed``) from templates x names x description."""
        entry = self._entries[entry_id]
        rng = random.Random(seed)
        templates = self._caption_templates(entry, modality)
        out = []
        for _ in range(n):
            template = rng.choice(templates)
            description = entry.description.rstrip(".") if entry.description else entry.name
            out.append(template.format(name=rng.choice(entry.names), modality=modality, description=description))
        return out


ENSEMBLE_TEMPLATES = ["{name}", "the {name}", "an image of the {name}", "a medical image showing the {name}"]
ENSEMBLE_TEMPLATES_MODALITY = [
    "{name}",
    "the {name} on {modality}",
    "a {modality} image of the {name}",
    "a {modality} slice showing the {name}",
]
MODALITY_TEMPLATES = ["{name}", "a {name} image", "a {name} scan", "a medical image acquired with {name}"]
CAPTION_TEMPLATES = ["{name}", "the {name}", "this region is the {name}", "{name}: {description}"]
CAPTION_TEMPLATES_MODALITY = [
    "the {name} on {modality}",
    "a {modality} slice showing the {name}",
    "{modality}, {name}: {description}",
]


@functools.lru_cache(maxsize=1)
def default_knowledge_base() -> KnowledgeBase:
    """The packaged knowledge base (read once per process)."""
    return KnowledgeBase.load(DEFAULT_PATH)
