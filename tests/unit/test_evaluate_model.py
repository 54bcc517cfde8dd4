"""Scorecard `model` checks (qa/evaluate.py): the trained model's per-segment intent
probabilities as evidence, thresholds from the model or the scorecard, and rules-only scoring
(no model) that decides exactly as the rules alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_evaluate import card_of, seg

from callqa.config import INTENTS
from callqa.data.phrases import get_bank
from callqa.data.synth_plan import plan_call
from callqa.qa.evaluate import ModelOutputs, evaluate
from callqa.qa.scorecard import Scorecard, ScorecardError
from callqa.schemas import CHECK_IDS, Segment

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "scorecards" / "default.yaml"
THRESHOLDS = {intent: 0.5 for intent in INTENTS}

# A 60 s call: the agent greets at 1 s, the customer talks at 4 s, the agent speaks again at 20 s.
SEGMENTS = [
    seg("agent", 1.0, "good morning you are through to sam"),
    seg("customer", 4.0, "hi i have a question about my bill"),
    seg("agent", 20.0, "right let me look at that for you"),
]


def outputs(*greeting_probs: float, intent: str = "greeting", thresholds=None) -> ModelOutputs:
    """A probability table with `intent` set per segment (every other intent at 0.01)."""
    rows = [{i: 0.01 for i in INTENTS} | {intent: p} for p in greeting_probs]
    return ModelOutputs(rows, thresholds or THRESHOLDS)


def run1(check: dict, model: ModelOutputs | None, segments=SEGMENTS, duration_s=60.0):
    return evaluate(card_of(check), segments, {}, duration_s, None, model)[0][0]


GREETING = {"id": "g", "type": "model", "intent": "greeting", "window_s": [0, 15]}


# ---------------------------------------------------------------------------------------------
# One model check
# ---------------------------------------------------------------------------------------------
def test_hit_inside_the_window_is_evidence_with_its_probability():
    r = run1(GREETING, outputs(0.91, 0.97, 0.2))
    assert r.passed is True and r.score == 0.91  # the customer's 0.97 is not the agent's
    [ev] = r.evidence
    assert (ev.start, ev.role, ev.probability) == (1.0, "agent", 0.91)
    assert ev.text == "good morning you are through to sam" and ev.end == SEGMENTS[0].end
    assert "threshold 0.50 (model)" in r.detail and "at 1.0 s" in r.detail


def test_hit_outside_the_window_does_not_count():
    r = run1(GREETING, outputs(0.3, 0.01, 0.95))
    assert r.passed is False and r.evidence == []
    assert r.score == 0.3  # the best probability inside the window
    assert "no segment with greeting p >= threshold 0.50 (model); highest 0.30" in r.detail
    # Without a window, the segment at 20 s is evidence.
    r = run1(GREETING | {"window_s": None}, outputs(0.3, 0.01, 0.95))
    assert r.passed is True and [e.start for e in r.evidence] == [20.0]
    # role any: the customer's segment counts as well.
    r = run1(GREETING | {"role": "any"}, outputs(0.3, 0.8, 0.1))
    assert r.passed is True and r.evidence[0].role == "customer"


def test_threshold_from_the_model_unless_the_check_sets_one():
    model = outputs(0.7, 0.0, 0.0, thresholds=THRESHOLDS | {"greeting": 0.8})
    r = run1(GREETING, model)
    assert r.passed is False and "threshold 0.80 (model)" in r.detail
    r = run1(GREETING | {"threshold": 0.65}, model)
    assert r.passed is True and "threshold 0.65 (scorecard)" in r.detail
    # A model without a threshold for the intent needs one in the scorecard.
    partial = ModelOutputs(model.intent_probs, {"closing": 0.5})
    with pytest.raises(ScorecardError, match="no threshold for intent 'greeting'"):
        run1(GREETING, partial)
    assert run1(GREETING | {"threshold": 0.6}, partial).passed is True


def test_probability_table_must_match_the_segments():
    with pytest.raises(ValueError, match="2 intent rows for 3 segments"):
        run1(GREETING, outputs(0.9, 0.1))


def test_top_level_model_check_without_a_model_is_not_evaluated():
    results, score, critical = evaluate(
        card_of(GREETING | {"critical": True}, {"id": "k", "type": "phrase", "keywords": ["bill"]}),
        SEGMENTS, {}, 60.0, None, None,
    )  # fmt: skip
    assert results[0].passed is None and "no trained model" in results[0].detail
    assert score == 100.0 and critical is False  # left out of the score, never critical


# ---------------------------------------------------------------------------------------------
# Model checks inside combinations
# ---------------------------------------------------------------------------------------------
def _with_rules(kind: str, intent: str, keyword: str) -> dict:
    return {
        "id": "c",
        "type": kind,
        "role": "agent",
        "checks": [
            {"type": "phrase", "keywords": [keyword]},
            {"type": "model", "intent": intent},
        ],
    }


def test_any_passes_on_the_model_when_the_rules_miss():
    check = _with_rules("any", "greeting", "thanks for calling")
    r = run1(check, outputs(0.88, 0.0, 0.0))
    assert r.passed is True and r.evidence[0].probability == 0.88
    assert r.detail.startswith("model: greeting p=0.88")
    assert run1(check, outputs(0.2, 0.0, 0.0)).passed is False
    # Without a model the rules decide alone: a miss is a failure, not "not evaluated".
    r = run1(check, None)
    assert r.passed is False and r.detail == "phrase: no matching phrase"
    # Rules that find the phrase decide before the model is asked.
    r = run1(_with_rules("any", "greeting", "good morning"), outputs(0.1, 0.0, 0.0))
    assert r.passed is True and r.evidence[0].probability is None


def test_forbidden_language_none_fails_on_either_the_rules_or_the_model():
    check = _with_rules("none", "forbidden_language", "stupid")
    calm = outputs(0.1, 0.0, 0.05, intent="forbidden_language")
    rude = outputs(0.1, 0.0, 0.93, intent="forbidden_language")
    assert run1(check, calm).passed is True
    r = run1(check, rude)
    assert r.passed is False and r.score == 0.0
    assert [(e.start, e.probability) for e in r.evidence] == [(20.0, 0.93)]
    assert "forbidden_language p=0.93" in r.detail
    assert run1(check, None).passed is True  # the rules find nothing
    said = [*SEGMENTS[:2], seg("agent", 20.0, "that is a stupid question")]
    r = run1(check, calm, segments=said)
    assert r.passed is False and r.evidence[0].text == "stupid"
    assert run1(check, None, segments=said).passed is False


def test_combination_of_model_checks_only_is_not_evaluated_without_a_model():
    check = {"id": "c", "type": "all", "checks": [{"type": "model", "intent": "greeting"}]}
    assert run1(check, None).passed is None
    assert run1(check, outputs(0.9, 0.0, 0.0)).passed is True


# ---------------------------------------------------------------------------------------------
# Rules only: the default scorecard without a model decides exactly as its rules
# ---------------------------------------------------------------------------------------------
def _rules_only(data: dict) -> dict:
    """The scorecard data with every model check removed (the scorecard before issue 11)."""

    def strip(check):
        if isinstance(check, dict) and "checks" in check:
            kept = [
                c for c in check["checks"] if not (isinstance(c, dict) and c["type"] == "model")
            ]
            return check | {"checks": [strip(c) for c in kept]}
        return check

    return data | {"checks": [strip(c) for c in data["checks"]]}


def _plan_segments(seed: int, failures: dict[str, bool]) -> tuple[list[Segment], float]:
    """A planned synth call (dev bank) as segments: one per line, 2.5 words a second."""
    plan = plan_call(seed, failures, get_bank("dev"))
    segments, t = [], 0.5
    for line in plan.lines:
        segments.append(seg(line.role, t, line.text))
        t = segments[-1].end + max(line.gap_s, 0.3)
    return segments, t + 1.0


@pytest.fixture(scope="module")
def encoder():
    from callqa.text.encoder import get_encoder

    return get_encoder("bundled")


def test_default_scorecard_without_a_model_equals_its_rules(encoder):
    data = yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))
    card, rules = Scorecard.load(DEFAULT), Scorecard.from_dict(_rules_only(data))
    assert sum(c.type == "model" for c in card.by_id.values()) == len(INTENTS)
    failed = set()
    # One call per planned phrase failure (a missing greeting, ... forbidden language), one clean.
    for seed, fails in enumerate([*INTENTS, None]):
        failures = {cid: cid == fails for cid in CHECK_IDS}
        segments, duration_s = _plan_segments(seed, failures)
        with_model = evaluate(card, segments, {}, duration_s, encoder, None)
        assert with_model == evaluate(rules, segments, {}, duration_s, encoder), seed
        failed |= {r.id for r in with_model[0] if r.passed is False}
    # The calls fail phrase checks: where an ignored model check could change the result.
    assert len(failed & set(INTENTS)) >= 3, failed
