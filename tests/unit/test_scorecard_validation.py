"""Scorecard validation at load (qa/scorecard.py) for what used to pass and then misbehave per
call: symbol-only keywords, non-finite or contradictory bounds, unknown metric paths, patterns
that break once joined, bad span sizes and weights, catastrophic regexes, YAML aliases and
duplicate keys (fuzz round 3, findings 5-12 and 18)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import pytest

from callqa.qa.evaluate import evaluate
from callqa.qa.scorecard import (
    MAX_WEIGHT,
    REGEX_TIMEOUT_S,
    Scorecard,
    ScorecardError,
    load_yaml_strict,
)
from callqa.schemas import Segment, Word

ROOT = Path(__file__).resolve().parents[2]
JFK = (
    "and so my fellow americans ask not what your country can do for you "
    "ask what you can do for your country"
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "card.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _load(tmp_path: Path, text: str) -> Scorecard:
    return Scorecard.load(_write(tmp_path, text))


def _error(tmp_path: Path, text: str) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(ScorecardError) as exc:
        Scorecard.load(path)
    assert str(path) in str(exc.value)
    return str(exc.value)


def _segments(text: str = JFK) -> list[Segment]:
    words = [
        Word(word=f" {w}", start=round(i * 0.4, 3), end=round(i * 0.4 + 0.3, 3))
        for i, w in enumerate(text.split())
    ]
    return [Segment(role="agent", start=0.0, end=words[-1].end, text=f" {text}", words=words)]


def _run(card: Scorecard, text: str = JFK):
    return evaluate(card, _segments(text), {}, 60.0, None)


# ---------------------------------------------------------------------------------------------
# 5: keywords
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keyword", ["$$$", "?!", "..."])
def test_keyword_without_words_is_rejected(tmp_path, keyword):
    msg = _error(tmp_path, f"checks:\n  - {{id: refund, type: phrase, keywords: ['{keyword}']}}\n")
    assert "'refund'" in msg and "keywords" in msg and "no letters or digits" in msg


@pytest.mark.parametrize("keyword", ["c++", "100%", "#1", "$5", "r&d"])
def test_keyword_with_symbols_is_rejected_not_truncated(tmp_path, keyword):
    """Rejected, not matched: transcripts are normalised to plain words before matching, so
    "c++" can never appear in them literally; turning it into the whole word "c" (what the
    old code did) finds every spelt-out letter c. The user is told to spell symbols out."""
    msg = _error(tmp_path, f"checks:\n  - {{id: lang, type: phrase, keywords: ['{keyword}']}}\n")
    assert "'lang'" in msg and "keywords" in msg and "spell symbols out" in msg


def test_keywords_with_plain_punctuation_still_load_and_match(tmp_path):
    card = _load(
        tmp_path,
        "checks:\n  - {id: a, type: phrase, keywords: ['Your country!', 'e-mail', \"you're\"]}\n",
    )
    results, score, _ = _run(card)
    assert results[0].passed is True and results[0].evidence[0].text == "your country"
    assert score == 100.0


# ---------------------------------------------------------------------------------------------
# 6: bounds and windows
# ---------------------------------------------------------------------------------------------
def test_non_finite_window_is_rejected(tmp_path):
    msg = _error(
        tmp_path,
        "checks:\n  - {id: win, type: phrase, window_s: [.nan, .nan], keywords: [country]}\n",
    )
    assert "'win'" in msg and "window_s" in msg and "finite" in msg


@pytest.mark.parametrize(
    ("bounds", "expect"),
    [
        ("max: .nan", "finite"),
        ("min: .inf", "finite"),
        ("above: -.inf", "finite"),
        ("below: .nan", "finite"),
        ("min: 190, max: 100", "min 190 and max 100: no value can pass"),
        ("above: 5, below: 5", "above 5 and below 5: no value can pass"),
        ("min: 5, below: 5", "min 5 and below 5: no value can pass"),
        ("above: 5, max: 5", "above 5 and max 5: no value can pass"),
        ("min: 1, above: 10, max: 8", "above 10 and max 8: no value can pass"),
    ],
)
def test_non_finite_or_contradictory_bounds_are_rejected(tmp_path, bounds, expect):
    msg = _error(
        tmp_path,
        "checks:\n"
        f"  - {{id: rate, type: metric, role: agent, metric: agent.speech_rate_wpm, {bounds}}}\n",
    )
    key = bounds.split(":")[0]
    assert "'rate'" in msg and expect in msg and (key in msg or "," in bounds)


def test_a_single_value_range_loads(tmp_path):
    card = _load(
        tmp_path,
        "checks:\n  - {id: n, type: metric, metric: agent.n_responses, min: 2, max: 2}\n",
    )
    assert (card.by_id["n"].min, card.by_id["n"].max) == (2, 2)


# ---------------------------------------------------------------------------------------------
# 7: metric and event paths
# ---------------------------------------------------------------------------------------------
def test_misspelt_metric_path_is_rejected_with_a_suggestion(tmp_path):
    msg = _error(
        tmp_path,
        "checks:\n"
        "  - {id: dead_air, type: metric, metric: call.longest_mutual_silence, max: 5}\n"
        "  - {id: b, type: phrase, keywords: [zebra]}\n",
    )
    assert "'dead_air'" in msg and "metric" in msg
    assert "unknown metric 'call.longest_mutual_silence'" in msg
    assert "did you mean 'call.longest_mutual_silence_s'" in msg


def test_unknown_or_misused_event_path_is_rejected(tmp_path):
    head = "checks:\n  - {id: ot, type: metric, metric: agent.longest_overtalk_s, max: 2, "
    msg = _error(tmp_path, head + "events: call.overtalks}\n")
    assert "'ot'" in msg and "events" in msg and "unknown event list 'call.overtalks'" in msg
    # A scalar metric is not an event list, and an event list is not a metric.
    assert "unknown event list" in _error(tmp_path, head + "events: call.overtalk_s}\n")
    msg = _error(tmp_path, "checks:\n  - {id: m, type: metric, metric: call.overtalk, max: 1}\n")
    assert "'m'" in msg and "unknown metric 'call.overtalk'" in msg


def _repo_scorecards() -> list[Path]:
    found = sorted((ROOT / "scorecards").glob("*.yaml")) + sorted((ROOT / "demo").rglob("*.yaml"))
    return [p for p in found if "\nchecks:" in "\n" + p.read_text(encoding="utf-8")]


def test_every_scorecard_in_the_repo_loads():
    cards = _repo_scorecards()
    assert ROOT / "scorecards" / "default.yaml" in cards
    for path in cards:
        card = Scorecard.load(path)
        assert card.checks and card.metric_paths(), path


# ---------------------------------------------------------------------------------------------
# 8: patterns are compiled and searched one by one
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "patterns",
    [
        ["(?i)COUNTRY"],
        ["(?P<w>zebra)", "(?P<w>country)"],
        ["(zebra) x", r"(ask) what you can do for your country \1"],
        ["zebra", r"(ask) (not) what your \w+ can do for you \1"],
    ],
)
def test_patterns_mean_what_they_mean_alone(tmp_path, patterns):
    quoted = ", ".join(f"'{p}'" for p in patterns)
    card = _load(tmp_path, f"checks:\n  - {{id: c1, type: phrase, patterns: [{quoted}]}}\n")
    text = JFK + " ask"  # so the backreference to "ask" has something to match
    results, _, _ = _run(card, text)
    assert results[0].passed is True, results[0].detail


def test_overlapping_matches_give_evidence_once(tmp_path):
    card = _load(
        tmp_path,
        "checks:\n"
        "  - {id: f, type: phrase, mode: forbid, keywords: [your country],"
        " patterns: ['your \\w+', 'country']}\n",
    )
    results, _, _ = _run(card)
    assert [e.text for e in results[0].evidence] == ["your country", "your country"]


def test_invalid_pattern_is_rejected_at_load(tmp_path):
    msg = _error(tmp_path, "checks:\n  - {id: p, type: phrase, patterns: ['(?P<w>a)(?P=x)']}\n")
    assert "'p'" in msg and "patterns" in msg and "not a valid regex" in msg
    msg = _error(
        tmp_path,
        "checks:\n  - {id: s, type: semantic, threshold: 0.5, examples: [hi], anchors: ['(']}\n",
    )
    assert "'s'" in msg and "anchors" in msg and "not a valid regex" in msg


# ---------------------------------------------------------------------------------------------
# 9 and 10: span sizes and weights
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spans", ["[0]", "[-3]", "[6, 0]"])
def test_span_words_must_be_positive(tmp_path, spans):
    msg = _error(
        tmp_path,
        "checks:\n"
        f"  - {{id: s, type: semantic, threshold: 0.5, span_words: {spans}, examples: [hi]}}\n",
    )
    assert "'s'" in msg and "span_words" in msg and "greater than 0" in msg


@pytest.mark.parametrize("weight", [".inf", ".nan", "1e308", str(MAX_WEIGHT + 1)])
def test_weight_must_be_finite_and_bounded(tmp_path, weight):
    msg = _error(
        tmp_path, f"checks:\n  - {{id: a, type: phrase, weight: {weight}, keywords: [zebra]}}\n"
    )
    assert "'a'" in msg and "weight" in msg


def test_extreme_legal_weights_give_a_finite_score(tmp_path):
    many = "".join(
        f"  - {{id: k{i}, type: phrase, weight: {MAX_WEIGHT:g}, keywords: [country]}}\n"
        for i in range(200)
    )
    card = _load(
        tmp_path,
        "checks:\n"
        f"  - {{id: miss, type: phrase, weight: {MAX_WEIGHT:g}, keywords: [zebra]}}\n" + many,
    )
    _, score, _ = _run(card)
    assert math.isfinite(score) and score == 99.5
    zero = _load(tmp_path, "checks:\n  - {id: z, type: phrase, weight: 0, keywords: [zebra]}\n")
    assert _run(zero)[1] == 100.0  # nothing weighs anything: nothing failed


# ---------------------------------------------------------------------------------------------
# 11: catastrophic patterns
# ---------------------------------------------------------------------------------------------
@pytest.mark.timeout(60, method="signal")
def test_catastrophic_pattern_is_left_out_instead_of_hanging(tmp_path, caplog):
    card = _load(
        tmp_path,
        "checks:\n"
        "  - {id: r, type: phrase, patterns: ['^(\\w|\\w\\w|\\s)+\\d']}\n"
        "  - {id: any_r, type: any, checks: [r, {type: phrase, keywords: [zebra]}]}\n"
        "  - {id: ok, type: phrase, keywords: [country]}\n",
    )
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="callqa.qa.evaluate"):
        results, score, critical = _run(card)
    assert time.monotonic() - t0 < REGEX_TIMEOUT_S + 5
    r, any_r, ok = results
    assert r.passed is None and "took longer than" in r.detail and "\\d" in r.detail
    assert any_r.passed is None  # a child not evaluated, none passed: not evaluated either
    assert ok.passed is True and score == 100.0 and critical is False
    assert any("check r:" in m and "took longer" in m for m in caplog.messages)


# ---------------------------------------------------------------------------------------------
# 12 and 18: YAML aliases and duplicate keys
# ---------------------------------------------------------------------------------------------
def test_yaml_alias_bomb_is_rejected_at_once(tmp_path):
    y = "x0: &c0 {type: phrase, keywords: [x]}\n"
    for i in range(1, 8):
        y += f"x{i}: &c{i} {{type: any, checks: [{', '.join([f'*c{i - 1}'] * 10)}]}}\n"
    y = "_:\n" + "".join(f"  {line}\n" for line in y.splitlines())
    y += "checks:\n  - {id: top, type: any, checks: [*c6]}\n"
    t0 = time.monotonic()
    msg = _error(tmp_path, y)
    assert time.monotonic() - t0 < 1.0
    assert "line 3" in msg and "aliases (*c0) are not allowed" in msg and "\n" not in msg


def test_any_alias_is_rejected_with_its_line(tmp_path):
    msg = _error(
        tmp_path,
        "checks:\n"
        "  - {id: a, type: phrase, window_s: &w [0, 15], keywords: [hello]}\n"
        "  - {id: b, type: phrase, window_s: *w, keywords: [bye]}\n",
    )
    assert "line 3" in msg and "*w" in msg


def test_duplicate_keys_are_rejected_with_both_lines(tmp_path):
    msg = _error(
        tmp_path,
        "checks:\n  - id: a\n    type: phrase\n    keywords: [country]\n    keywords: [zebra]\n",
    )
    assert "line 5" in msg and "key 'keywords' is given twice (first at line 4)" in msg
    assert "\n" not in msg
    msg = _error(tmp_path, "checks:\n  - {id: a, type: phrase, keywords: [x], id: b}\n")
    assert "key 'id' is given twice" in msg and "line 2" in msg


def test_load_yaml_strict_on_its_own():
    assert load_yaml_strict("a: [1, 2]\nb: {c: d}\n", "x.yaml") == {"a": [1, 2], "b": {"c": "d"}}
    with pytest.raises(ValueError, match=r"^x\.yaml: not valid YAML: line 2: "):
        load_yaml_strict("a: 1\na: 2\n", "x.yaml")
    with pytest.raises(ValueError, match=r"^x\.yaml: not valid YAML: line 1: ") as exc:
        load_yaml_strict("a: b: c\n", "x.yaml")
    assert "\n" not in str(exc.value)
