"""Scorecard evaluation: one call's segments + metrics -> check results, call score, critical flag.

`evaluate()` runs every top-level check of a loaded `Scorecard` (`callqa.qa.scorecard`) on the
call's word runs (`callqa.qa.runs`), metrics (`callqa.audio.metrics`) and, when the Scorer has a
trained model, its per-segment intent probabilities (`ModelOutputs`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import regex

from callqa.audio.metrics import metric_unit
from callqa.qa.runs import Run, build_runs, candidate_spans, runs_for, span_evidence
from callqa.qa.scorecard import (
    REGEX_TIMEOUT_S,
    CheckBase,
    CombinationCheck,
    Encoder,
    MetricCheck,
    ModelCheck,
    PhraseCheck,
    Scorecard,
    ScorecardError,
    SemanticCheck,
)
from callqa.schemas import CheckResult, Evidence, Segment
from callqa.text.normalize import normalize_text

logger = logging.getLogger(__name__)

MAX_EVIDENCE = 10


def resolve_window(window_s: tuple[float, float] | None, duration_s: float) -> tuple[float, float]:
    """Absolute [start, end] seconds of a check window (see CheckBase.window_s)."""
    if window_s is None:
        return (-math.inf, math.inf)
    start, end = window_s
    start = duration_s + start if start < 0 else start
    end = duration_s + end if end <= 0 else end  # validated: an end <= 0 counts from the end
    return (max(start, 0.0), end)


@dataclass(frozen=True)
class ModelOutputs:
    """What the trained model says about one call, for the scorecard's `model` checks.

    Attributes:
        intent_probs: one `{intent: probability}` per segment, in the order of the segments
            given to `evaluate()`.
        thresholds: the model's decision threshold per intent (tuned on validation data); a
            check without its own `threshold` uses these.
    """

    intent_probs: list[dict[str, float]]
    thresholds: dict[str, float]


@dataclass
class Outcome:
    passed: bool | None
    score: float
    evidence: list[Evidence]
    detail: str
    # A model check on a call scored without a model: combinations leave it out, so the
    # rules decide exactly as they would without the check.
    ignored: bool = False


def _no_model() -> Outcome:
    return Outcome(None, 0.0, [], "not evaluated: no trained model (rules only)", ignored=True)


class _PatternTimeout(Exception):
    """A scorecard pattern ran past REGEX_TIMEOUT_S on one text."""

    def __init__(self, pattern: str):
        super().__init__(pattern)
        self.pattern = pattern


def _timed_out(check: CheckBase, pattern: str) -> Outcome:
    logger.warning(
        "check %s: pattern %r took longer than %g s (catastrophic backtracking?); the check is "
        "left out of this call's score: simplify the pattern",
        check.id,
        pattern,
        REGEX_TIMEOUT_S,
    )
    return Outcome(
        None, 0.0, [], f"not evaluated: pattern {pattern!r} took longer than {REGEX_TIMEOUT_S:g} s"
    )


def _matches(rx: regex.Pattern, text: str) -> list[regex.Match]:
    try:
        return list(rx.finditer(text, timeout=REGEX_TIMEOUT_S))
    except TimeoutError:
        raise _PatternTimeout(rx.pattern) from None


def _first_match(rx: regex.Pattern, text: str) -> regex.Match | None:
    try:
        return rx.search(text, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        raise _PatternTimeout(rx.pattern) from None


class _Context:
    def __init__(self, card, segments, metrics, duration_s, encoder, model):
        self.card = card
        self.segments = segments
        self.runs = build_runs(segments)
        self.metrics = metrics
        self.duration_s = duration_s
        self.encoder = encoder
        self.model = model
        self.done: dict[str, Outcome] = {}

    def run(self, check: CheckBase | str) -> Outcome:
        check = self.card.by_id[check] if isinstance(check, str) else check
        if check.id not in self.done:
            fn = {
                PhraseCheck: _eval_phrase,
                SemanticCheck: _eval_semantic,
                MetricCheck: _eval_metric,
                ModelCheck: _eval_model,
                CombinationCheck: _eval_combination,
            }[type(check)]
            try:
                self.done[check.id] = fn(check, self)
            except _PatternTimeout as exc:
                self.done[check.id] = _timed_out(check, exc.pattern)
            logger.debug("check %s: %s", check.id, self.done[check.id])
        return self.done[check.id]


def evaluate(
    scorecard: Scorecard,
    segments: list[Segment],
    metrics: dict,
    duration_s: float,
    encoder: Encoder | None,
    model: ModelOutputs | None = None,
) -> tuple[list[CheckResult], float, bool]:
    """Run every top-level check on one call.

    Args:
        scorecard: a loaded `Scorecard`.
        segments: ASR segments with roles (words optional; without them times are interpolated).
        metrics: `{"call": {...}, "agent": {...}, "customer": {...}}`; null = undefined.
        duration_s: call length, for windows that count back from the end.
        encoder: sentence encoder (`encode(texts) -> (n, d)` L2-normalised); needed only when
            the scorecard has semantic checks.
        model: the trained model's outputs for these segments; None scores with the rules
            only (`model` checks are not evaluated and combinations ignore them).

    Returns:
        (check results in scorecard order, call score 0-100, critical_fail). The call score is
        100 x sum(weight x passed) / sum(weight) over checks whose `passed` is not null (100
        when none is); a failed critical check sets critical_fail and leaves the score alone.
    """
    if model is not None and len(model.intent_probs) != len(segments):
        raise ValueError(
            f"the model gave {len(model.intent_probs)} intent rows for {len(segments)} segments"
        )
    ctx = _Context(scorecard, segments, metrics, duration_s, encoder, model)
    results, num, den, critical_fail = [], 0.0, 0.0, False
    for check in scorecard.checks:
        out = ctx.run(check)
        results.append(
            CheckResult(
                id=check.id,
                passed=out.passed,
                score=round(min(max(out.score, 0.0), 1.0), 4),
                evidence=out.evidence[:MAX_EVIDENCE],
                detail=out.detail,
            )
        )
        if out.passed is not None:
            num += check.weight * out.passed
            den += check.weight
        critical_fail |= check.critical and out.passed is False
    score = round(100.0 * num / den, 1) if den > 0 else 100.0
    logger.debug("scorecard %s: score %.1f, critical_fail %s", scorecard.name, score, critical_fail)
    return results, score, critical_fail


def _phrase_spans(regexes: list[regex.Pattern], text: str) -> list[tuple[int, int]]:
    """(start, end) of the regexes' matches, without overlaps: as one regex of alternatives
    would, the earliest match wins and, at one position, the regex listed first."""
    found = sorted(
        (m.start(), i, m.end()) for i, rx in enumerate(regexes) for m in _matches(rx, text)
    )
    spans: list[tuple[int, int]] = []
    for start, _, end in found:
        if not spans or (start >= spans[-1][1] and start != spans[-1][0]):
            spans.append((start, end))
    return spans


def _eval_phrase(check: PhraseCheck, ctx: _Context) -> Outcome:
    regexes = check.regexes()
    w0, w1 = resolve_window(check.window_s, ctx.duration_s)
    found: list[Evidence] = []
    for run in runs_for(ctx.runs, check.role):
        text = run.text(0, len(run.tokens))
        # Character offset of each token in `text`, to map a match back to words and times.
        offsets = np.cumsum([0] + [len(t.norm) + 1 for t in run.tokens])
        for start, end in _phrase_spans(regexes, text):
            i0 = int(np.searchsorted(offsets, start, side="right") - 1)
            i1 = int(np.searchsorted(offsets, max(end - 1, start), side="right"))
            if w0 <= run.tokens[i0].start <= w1:
                found.append(span_evidence(run, i0, i1))
    found.sort(key=lambda e: e.start)
    where = f" at {found[0].start:.1f} s" if found else ""
    if check.mode == "require":
        passed = bool(found)
        detail = f"found {found[0].text!r}{where}" if found else "no matching phrase"
        return Outcome(passed, float(passed), found[:1], detail)
    passed = not found
    detail = f"forbidden phrase {found[0].text!r}{where}" if found else "no forbidden phrase"
    return Outcome(passed, float(passed), found, detail)


def _eval_semantic(check: SemanticCheck, ctx: _Context) -> Outcome:
    if ctx.encoder is None:
        raise ScorecardError(f"check {check.id!r} is semantic and needs a sentence encoder")
    w0, w1 = resolve_window(check.window_s, ctx.duration_s)
    anchors = check.anchor_regexes()
    cands: list[tuple[Run, int, int]] = []
    for run in runs_for(ctx.runs, check.role):
        for i0, i1 in candidate_spans(run, check.span_words, check.stride_words):
            if w0 <= run.tokens[i0].start <= w1 and (
                not anchors or any(_first_match(a, run.text(i0, i1)) for a in anchors)
            ):
                cands.append((run, i0, i1))
    best, best_i = 0.0, None
    if cands:
        examples = ctx.encoder.encode([normalize_text(e) for e in check.examples])
        vecs = ctx.encoder.encode([r.text(i0, i1) for r, i0, i1 in cands])
        sims = (vecs @ examples.T).max(axis=1)
        best_i = int(np.argmax(sims))
        best = float(max(sims[best_i], 0.0))
    ev = [span_evidence(*cands[best_i])] if best_i is not None else []
    hit = best >= check.threshold
    quote = f"{ev[0].text!r} ({best:.2f}) at {ev[0].start:.1f} s" if ev else "no speech"
    if check.mode == "require":
        detail = f"found {quote}" if hit else f"not found; closest {quote}"
        return Outcome(hit, best, ev if hit else [], detail)
    detail = f"forbidden: {quote}" if hit else f"none found; closest {quote}"
    return Outcome(not hit, best, ev if hit else [], detail)


def _eval_model(check: ModelCheck, ctx: _Context) -> Outcome:
    if ctx.model is None:
        return _no_model()
    threshold, source = check.threshold, "scorecard"
    if threshold is None:
        if check.intent not in ctx.model.thresholds:
            raise ScorecardError(
                f"check {check.id!r}: the model has no threshold for intent {check.intent!r}; "
                "give the check a `threshold`"
            )
        threshold, source = ctx.model.thresholds[check.intent], "model"
    w0, w1 = resolve_window(check.window_s, ctx.duration_s)
    best, hits = 0.0, []
    for seg, probs in zip(ctx.segments, ctx.model.intent_probs, strict=True):
        if check.role in (seg.role, "any") and w0 <= seg.start <= w1:
            p = float(probs.get(check.intent, 0.0))
            best = max(best, p)
            if p >= threshold:
                hits.append(
                    Evidence(
                        start=round(seg.start, 3),
                        end=round(seg.end, 3),
                        role=seg.role,
                        text=seg.text.strip(),
                        probability=round(p, 4),
                    )
                )
    hits.sort(key=lambda e: e.start)
    limit = f"threshold {threshold:.2f} ({source})"
    if hits:
        top = max(hits, key=lambda e: e.probability)
        detail = f"{check.intent} p={top.probability:.2f} >= {limit} at {top.start:.1f} s"
    else:
        detail = f"no segment with {check.intent} p >= {limit}; highest {best:.2f}"
    return Outcome(bool(hits), best, hits, detail)


def _lookup(metrics: dict, path: str) -> tuple[bool, Any]:
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _metric_label(check: MetricCheck) -> tuple[str, str]:
    section, _, key = check.metric.rpartition(".")
    stem, unit = metric_unit(key)
    name = stem.replace("_", " ")
    if section != "call":
        name = f"{section.replace('.', ' ')} {name}"
    return check.label or name, unit


def _fmt(value: float, unit: str) -> str:
    text = f"{value:.0f}" if unit == "wpm" else f"{value:.2f}".rstrip("0")
    return f"{text}0 {unit}" if text.endswith(".") else f"{text} {unit}".strip()


def _violations(check: MetricCheck, value: float) -> list[tuple[str, float]]:
    """(operator shown in `detail`, bound) for every bound the value breaks."""
    tests = [
        (check.min, "<", lambda v, b: v < b),
        (check.max, ">", lambda v, b: v > b),
        (check.above, "<=", lambda v, b: v <= b),
        (check.below, ">=", lambda v, b: v >= b),
    ]
    return [(op, b) for b, op, broken in tests if b is not None and broken(value, b)]


def _event_evidence(check: MetricCheck, ctx: _Context) -> list[Evidence]:
    found, events = _lookup(ctx.metrics, check.events) if check.events else (False, None)
    if not found or not events:
        return []
    out = []
    for ev in events:
        if isinstance(ev, list | tuple):
            ev = {"start": ev[0], "end": ev[1]}
        if any(str(ev.get(k)) != v for k, v in check.events_where.items()):
            continue
        dur = ev.get("duration_s") or (ev["end"] - ev["start"])
        upper = [(op, b) for op, b in _violations(check, dur) if op in (">", ">=")]
        if (check.max is not None or check.below is not None) and not upper:
            continue
        role = ev.get("by") if ev.get("by") in ("agent", "customer") else "call"
        text = _words_between(ctx.runs, role, ev["start"], ev["end"]) if role != "call" else ""
        out.append(
            Evidence(start=round(ev["start"], 3), end=round(ev["end"], 3), role=role, text=text)
        )
    return out


def _words_between(runs: list[Run], role: str, start: float, end: float) -> str:
    words = []
    for run in runs_for(runs, role):
        idx = sorted({t.raw for t in run.tokens if t.end > start and t.start < end})
        words += [run.raw_words[i] for i in idx]
    return " ".join(words)


def _eval_metric(check: MetricCheck, ctx: _Context) -> Outcome:
    label, unit = _metric_label(check)
    found, value = _lookup(ctx.metrics, check.metric)
    if not found:
        logger.warning("check %s: metric %r is missing from the metrics", check.id, check.metric)
        return Outcome(None, 0.0, [], f"{label}: metric {check.metric!r} not computed")
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return Outcome(None, 0.0, [], f"{label} not available for this call")
    broken = _violations(check, float(value))
    if not broken:
        limits = ", ".join(
            f"{op} {_fmt(b, unit)}"
            for b, op in (
                (check.min, ">="),
                (check.above, ">"),
                (check.max, "<="),
                (check.below, "<"),
            )
            if b is not None
        )
        return Outcome(True, 1.0, [], f"{label} {_fmt(value, unit)} (limit {limits})")
    evidence = _event_evidence(check, ctx)
    op, bound = broken[0]
    detail = f"{label} {_fmt(value, unit)} {op} {_fmt(bound, unit)}"
    if evidence:
        worst = max(evidence, key=lambda e: e.end - e.start)
        detail += f" at {worst.start:.1f} s"
    return Outcome(False, 0.0, evidence, detail)


def _eval_combination(check: CombinationCheck, ctx: _Context) -> Outcome:
    # Children run in order and stop once one decides the result (any/none: a pass; all: a
    # fail), so a phrase match spares the sentence encoder its work on that call.
    decisive = False if check.type == "all" else True
    kids = []
    for child in check.checks:
        cid = child if isinstance(child, str) else child.id
        out = ctx.run(child)
        if out.ignored:
            continue
        # Inline children are named by their parent ("greeting.phrase" -> "phrase").
        kids.append((cid.removeprefix(f"{check.id}."), out))
        if out.passed is decisive:
            break
    if not kids:  # only model checks, on a call scored without a model
        return _no_model()
    states = [o.passed for _, o in kids]
    if check.type == "any":
        passed = True if True in states else (None if None in states else False)
        deciding = [o for _, o in kids if o.passed is passed]
    elif check.type == "all":
        passed = False if False in states else (None if None in states else True)
        deciding = [o for _, o in kids if o.passed is passed]
    else:  # none: fails as soon as one child passes
        passed = False if True in states else (None if None in states else True)
        deciding = [o for _, o in kids if o.passed is True]
    evidence: list[Evidence] = []
    for e in sorted((e for o in deciding for e in o.evidence), key=lambda e: e.start):
        # Phrase and semantic children often find the same words: keep the first of overlaps.
        if not any(k.role == e.role and k.start < e.end and e.start < k.end for k in evidence):
            evidence.append(e)
    shown = [(cid, o) for cid, o in kids if any(o is d for d in deciding)] or kids
    detail = "; ".join(f"{cid}: {o.detail}" for cid, o in shown)
    return Outcome(passed, 1.0 if passed else 0.0, evidence, detail)
