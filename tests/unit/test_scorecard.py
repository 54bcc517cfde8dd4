"""Scorecard loading (qa/scorecard.py): the default scorecard, validation errors that name the
file, the check and the key, and the agent-likeness scorer built from the agent examples."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from callqa.config import INTENTS
from callqa.qa.scorecard import Scorecard, ScorecardError
from callqa.schemas import CHECK_IDS

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "scorecards" / "default.yaml"


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------
def test_default_scorecard_loads_with_contract_ids_in_order():
    card = Scorecard.load(DEFAULT)
    assert [c.id for c in card.checks] == CHECK_IDS
    assert card.sha256 == hashlib.sha256(DEFAULT.read_bytes()).hexdigest()
    assert card.path == str(DEFAULT)
    crit = {c.id for c in card.checks if c.critical}
    assert {"identity_verification", "recording_disclosure", "forbidden_language"} <= crit
    assert card.by_id["greeting"].window_s == (0, 15)
    assert card.by_id["closing"].window_s == (-30, 0)
    # Inline children inherit role and window from their parent.
    assert card.by_id["closing.semantic"].window_s == (-30, 0)
    assert card.by_id["greeting.phrase"].role == "agent"
    assert set(card.metric_paths()) >= {
        "call.longest_mutual_silence_s",
        "agent.longest_overtalk_s",
        "agent.speech_rate_wpm",
    }


def test_agent_examples_come_from_the_marked_checks_only():
    card = Scorecard.load(DEFAULT)
    ex = card.agent_examples()
    marked = ["greeting", "identity_verification", "recording_disclosure", "closing"]
    assert [c.id for c in card.checks if c.agent_marker] == marked
    expected = [e for cid in marked for e in card.by_id[f"{cid}.semantic"].examples]
    assert ex == list(dict.fromkeys(expected))
    # What a customer says as often as an agent (rude lines) never marks the agent.
    assert not set(ex) & set(card.by_id["forbidden_language.semantic"].examples)


def _error(data: dict | str, tmp_path: Path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    with pytest.raises(ScorecardError) as exc:
        Scorecard.load(path)
    assert str(path) in str(exc.value)
    return str(exc.value)


PHRASE = {"id": "hello", "type": "phrase", "role": "agent", "keywords": ["hello"]}


def test_unknown_key_names_file_check_and_key(tmp_path):
    msg = _error({"checks": [PHRASE | {"wieght": 2}]}, tmp_path)
    assert "'hello'" in msg and "wieght" in msg and "unknown key" in msg
    msg = _error({"checks": [PHRASE], "colour": "red"}, tmp_path)
    assert "colour" in msg


def test_unknown_key_in_inline_child_names_the_parent(tmp_path):
    bad = {"id": "g", "type": "any", "checks": [{"type": "phrase", "keywords": ["x"], "typo": 1}]}
    msg = _error({"checks": [bad]}, tmp_path)
    assert "'g'" in msg and "typo" in msg


def test_unknown_and_missing_type(tmp_path):
    msg = _error({"checks": [PHRASE | {"type": "fuzzy"}]}, tmp_path)
    assert "'hello'" in msg and "phrase, semantic, metric" in msg
    no_type = {k: v for k, v in PHRASE.items() if k != "type"}
    assert "type" in _error({"checks": [no_type]}, tmp_path)


def test_bad_reference_duplicate_id_and_cycle(tmp_path):
    ref = {"id": "combo", "type": "any", "checks": ["hello", "nope"]}
    msg = _error({"checks": [PHRASE, ref]}, tmp_path)
    assert "'combo'" in msg and "'nope'" in msg and "unknown check id" in msg
    assert "used twice" in _error({"checks": [PHRASE, PHRASE | {"keywords": ["hi"]}]}, tmp_path)
    a = {"id": "a", "type": "all", "checks": ["b"]}
    b = {"id": "b", "type": "all", "checks": ["a"]}
    assert "cycle" in _error({"checks": [a, b]}, tmp_path)


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"patterns": ["(unclosed"]}, "not a valid regex"),
        ({"keywords": [], "patterns": []}, "needs `keywords` or `patterns`"),
        ({"window_s": [15, 5]}, "end must be after start"),
        ({"window_s": [-30, 10]}, "negative start"),
        ({"role": "call"}, "role 'call' is for metric checks"),
        ({"role": "supervisor"}, "role"),
        ({"weight": -1}, "weight"),
    ],
)
def test_invalid_check_fields(tmp_path, change, expect):
    assert expect in _error({"checks": [PHRASE | change]}, tmp_path)


def test_invalid_semantic_and_metric_checks(tmp_path):
    sem = {"id": "s", "type": "semantic", "examples": ["hi"], "threshold": 1.5}
    assert "threshold" in _error({"checks": [sem]}, tmp_path)
    assert "examples" in _error({"checks": [sem | {"examples": [], "threshold": 0.5}]}, tmp_path)
    met = {"id": "m", "type": "metric", "metric": "call.x_s"}
    assert "at least one of min" in _error({"checks": [met]}, tmp_path)
    assert "window_s does not apply" in _error(
        {"checks": [met | {"max": 1, "window_s": [0, 10]}]}, tmp_path
    )


MODEL = {"id": "greet_model", "type": "model", "intent": "greeting"}


def test_model_checks_parse_with_defaults_and_inheritance():
    card = Scorecard.from_dict({"checks": [MODEL]})
    check = card.by_id["greet_model"]
    assert (check.role, check.threshold, check.window_s) == ("agent", None, None)
    combo = {
        "id": "c",
        "type": "any",
        "role": "customer",
        "window_s": [0, 10],
        "checks": [{"type": "model", "intent": "closing", "threshold": 0.7}],
    }
    child = Scorecard.from_dict({"checks": [combo]}).by_id["c.model"]
    assert (child.role, child.window_s, child.threshold) == ("customer", (0, 10), 0.7)


def test_default_scorecard_pairs_each_phrase_check_with_the_model():
    card = Scorecard.load(DEFAULT)
    for cid in INTENTS:
        model = card.by_id[f"{cid}.model"]
        assert (model.intent, model.threshold) == (cid, None)
        assert card.by_id[cid].type == ("none" if cid == "forbidden_language" else "any")
        # The rules stay beside it.
        assert {f"{cid}.phrase", f"{cid}.semantic"} <= set(card.by_id)


def test_invalid_model_checks(tmp_path):
    msg = _error({"checks": [MODEL | {"intent": "greetings"}]}, tmp_path)
    assert "'greet_model'" in msg and "unknown intent 'greetings'" in msg
    assert ", ".join(INTENTS) in msg
    assert "intent" in _error({"checks": [{"id": "m", "type": "model"}]}, tmp_path)
    assert "threshold" in _error({"checks": [MODEL | {"threshold": 1.5}]}, tmp_path)
    assert "role 'call'" in _error({"checks": [MODEL | {"role": "call"}]}, tmp_path)
    assert "unknown key 'examples'" in _error({"checks": [MODEL | {"examples": ["hi"]}]}, tmp_path)


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(ScorecardError, match="cannot read"):
        Scorecard.load(tmp_path / "missing.yaml")
    assert "not valid YAML" in _error("checks: [unclosed", tmp_path)
    assert "mapping" in _error("- just a list", tmp_path)


@pytest.fixture(scope="module")
def encoder():
    from callqa.text.encoder import get_encoder

    return get_encoder("bundled")


def test_agent_likeness_rates_greeting_sentences_above_customer_ones(encoder):
    likeness = Scorecard.load(DEFAULT).agent_likeness(encoder)
    agent = likeness(
        [
            "good afternoon you're through to the billing team how can i help",
            "is there anything else i can do for you today",
        ]
    )
    customer = likeness(["my bill is wrong again", "i want to cancel my contract"])
    assert agent >= 0.3 and agent - customer >= 0.08  # what pick_agent asks of a winner
    assert likeness([]) == 0.0
    no_markers = Scorecard.from_dict({"checks": [PHRASE]}).agent_likeness(encoder)
    assert no_markers(["thank you for calling"]) == 0.0
