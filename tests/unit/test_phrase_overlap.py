"""The synth phrase banks share no sentence with the default scorecard (CONTRACTS.md).

If they did, the scorecard benchmark would measure memorisation, not paraphrase recall.
"""

import re

import pytest
import yaml
from conftest import ROOT

from callqa.data.phrases import BANK_NAMES, all_sentences, get_bank


def _norm(text: str) -> str:
    text = re.sub(r"\{[^}]*\}", " ", text.lower())  # template slots: {company}, {agent}
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text).split())


def _sentences(text: str) -> set[str]:
    parts = (_norm(p) for p in re.split(r"[.!?;]+", text))
    return {p for p in parts if len(p.split()) >= 3}


def _scorecard_examples(node) -> list[str]:
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "examples":
                out.extend(value)
            else:
                out.extend(_scorecard_examples(value))
    elif isinstance(node, list):
        for item in node:
            out.extend(_scorecard_examples(item))
    return out


@pytest.mark.parametrize("bank", BANK_NAMES)
def test_no_sentence_shared_with_default_scorecard(bank):
    card = yaml.safe_load((ROOT / "scorecards" / "default.yaml").read_text(encoding="utf-8"))
    examples = set().union(*(_sentences(e) for e in _scorecard_examples(card)))
    assert len(examples) > 20, "expected the default scorecard to carry example sentences"
    script = set().union(*(_sentences(s) for s in all_sentences(get_bank(bank))))
    assert len(script) > 50
    shared = examples & script  # the held-out banks' sentences are never printed: counts only
    assert not shared, sorted(shared) if bank in ("train", "dev") else len(shared)


def _plain(text: str) -> str:
    """Lower case, punctuation gone; template slots stay as words."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def test_no_train_sentence_equals_a_dev_or_test_sentence():
    # Counts only: the test banks' sentences are never printed.
    train = {_plain(s) for s in all_sentences(get_bank("train"))}
    train_parts = set().union(*(_sentences(s) for s in all_sentences(get_bank("train"))))
    for name in (n for n in BANK_NAMES if n != "train"):
        other = all_sentences(get_bank(name))
        whole = sum(_plain(s) in train for s in other)
        parts = len(train_parts & set().union(*(_sentences(s) for s in other)))
        assert whole == 0 and parts == 0, f"{whole} whole and {parts} sentences shared with {name}"
