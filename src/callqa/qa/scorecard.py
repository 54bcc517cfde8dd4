"""QA scorecard: YAML checks -> rules engine -> per-check results, call score, critical flag.

A scorecard (`scorecards/*.yaml`) lists checks of six types: `phrase` (keywords / regex),
`semantic` (MiniLM similarity to example sentences), `metric` (bounds on a call metric) and the
combinations `any` / `all` / `none`. `evaluate()` runs them on a transcript and the call metrics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from callqa.schemas import CheckResult, Evidence, Segment

logger = logging.getLogger(__name__)

CheckRole = Literal["agent", "customer", "any", "call"]
ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"
# Words further apart than this are not joined into one candidate span or phrase match.
MAX_WORD_GAP_S = 2.0
MAX_EVIDENCE = 10


class ScorecardError(ValueError):
    """A scorecard problem a user can fix; the message names the file, the check and the key."""


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------------
# Scorecard file model
# ---------------------------------------------------------------------------------------------
class CheckBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, pattern=ID_PATTERN)  # optional only for inline children
    description: str = ""
    role: CheckRole = "any"
    # [start, end] seconds from the call start; negative values count back from the end and an
    # end of 0 means the end of the call ([-30, 0] = last 30 s). Evidence must START inside.
    window_s: tuple[float, float] | None = None
    weight: float = Field(1.0, ge=0)
    critical: bool = False
    # Its semantic examples describe how agents talk (used to pick the agent on mono calls).
    agent_marker: bool = False

    @field_validator("window_s")
    @classmethod
    def _window_order(cls, w: tuple[float, float] | None) -> tuple[float, float] | None:
        if w is None:
            return w
        start, end = w
        same_side = (start >= 0 and end > 0) or (start < 0 and end < 0)
        if same_side and end <= start:
            raise ValueError(f"window_s {list(w)}: end must be after start")
        if start >= 0 and end == 0:
            return w  # from `start` to the end of the call
        if start < 0 and end > 0:
            raise ValueError(f"window_s {list(w)}: a negative start needs an end <= 0")
        return w


class PhraseCheck(CheckBase):
    """Keywords (literal, case-insensitive, whole words) or regex patterns in the role's speech."""

    type: Literal["phrase"]
    mode: Literal["require", "forbid"] = "require"
    keywords: list[str] = []
    patterns: list[str] = []

    @model_validator(mode="after")
    def _compile(self) -> PhraseCheck:
        if not self.keywords and not self.patterns:
            raise ValueError("a phrase check needs `keywords` or `patterns`")
        for p in self.patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"pattern {p!r} is not a valid regex: {exc}") from exc
        return self

    def regex(self) -> re.Pattern:
        parts = [_keyword_regex(k) for k in self.keywords if normalize_text(k)]
        parts += [f"(?:{p})" for p in self.patterns]
        return re.compile("|".join(parts), re.IGNORECASE)


class SemanticCheck(CheckBase):
    """Cosine similarity of the role's speech spans to example sentences."""

    type: Literal["semantic"]
    mode: Literal["require", "forbid"] = "require"
    examples: list[str] = Field(min_length=1)
    threshold: float = Field(gt=0, le=1)
    # Sliding windows of consecutive words, so a phrase buried in a long segment is found.
    span_words: list[int] = Field([6, 10, 15], min_length=1)
    stride_words: int = Field(3, ge=1)
    # Regexes (on normalised text); when given, only spans matching one are compared. Embeddings
    # of short, ASR-garbled spans drift: a word like "identity" in a misheard company name can
    # reach the threshold alone, so the span must also say something on topic.
    anchors: list[str] = []

    @field_validator("anchors")
    @classmethod
    def _anchor_regexes(cls, anchors: list[str]) -> list[str]:
        for a in anchors:
            try:
                re.compile(a)
            except re.error as exc:
                raise ValueError(f"anchor {a!r} is not a valid regex: {exc}") from exc
        return anchors


class MetricCheck(CheckBase):
    """Bounds on a metric (`section.key` in the metrics dict); null metric -> not evaluated."""

    type: Literal["metric"]
    metric: str = Field(pattern=r"^\w+(\.\w+)+$")
    min: float | None = None  # pass when value >= min
    max: float | None = None  # pass when value <= max
    above: float | None = None  # pass when value > above
    below: float | None = None  # pass when value < below
    # Event list (e.g. `call.overtalk`) whose items over the upper bound become evidence.
    events: str | None = Field(None, pattern=r"^\w+(\.\w+)+$")
    events_where: dict[str, str] = {}
    label: str | None = None  # for `detail`; default from the metric name

    @model_validator(mode="after")
    def _bounds(self) -> MetricCheck:
        if all(b is None for b in (self.min, self.max, self.above, self.below)):
            raise ValueError("a metric check needs at least one of min, max, above, below")
        if "window_s" in self.model_fields_set and self.window_s is not None:
            raise ValueError("window_s does not apply to metric checks (metrics are per call)")
        return self


def _child_tag(v: Any) -> str | None:
    if isinstance(v, str):
        return "ref"
    t = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
    return "combo" if t in ("any", "all", "none") else t


class CombinationCheck(CheckBase):
    """`any`: one child passes; `all`: every child passes; `none`: no child passes."""

    type: Literal["any", "all", "none"]
    checks: list[ChildCheck] = Field(min_length=1)


_CHECK_TYPES = "phrase, semantic, metric, any, all, none"
_type_error = {
    "custom_error_type": "unknown_check_type",
    "custom_error_message": f"missing or unknown check `type`; use one of {_CHECK_TYPES}",
}
AnyCheck = Annotated[
    Annotated[PhraseCheck, Tag("phrase")]
    | Annotated[SemanticCheck, Tag("semantic")]
    | Annotated[MetricCheck, Tag("metric")]
    | Annotated[CombinationCheck, Tag("combo")],
    Discriminator(_child_tag, **_type_error),
]
# A child is an inline check or the id of another check in the same scorecard.
ChildCheck = Annotated[
    Annotated[str, Tag("ref")]
    | Annotated[PhraseCheck, Tag("phrase")]
    | Annotated[SemanticCheck, Tag("semantic")]
    | Annotated[MetricCheck, Tag("metric")]
    | Annotated[CombinationCheck, Tag("combo")],
    Discriminator(_child_tag, **_type_error),
]
CombinationCheck.model_rebuild()


class ScorecardSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    description: str = ""
    version: int | str = 1
    checks: list[AnyCheck] = Field(min_length=1)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
@dataclass
class Scorecard:
    """A validated scorecard. `checks` are the top-level checks, reported in this order."""

    path: str
    sha256: str
    name: str
    checks: list[CheckBase]
    by_id: dict[str, CheckBase]

    @classmethod
    def load(cls, path: str | Path) -> Scorecard:
        """Read and validate a scorecard YAML file.

        Raises:
            ScorecardError: unreadable file, bad YAML, unknown key or type, bad id reference.
        """
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise ScorecardError(f"{p}: cannot read scorecard: {exc.strerror}") from exc
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ScorecardError(f"{p}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, path=str(p), sha256=hashlib.sha256(raw).hexdigest())

    @classmethod
    def from_dict(cls, data: Any, path: str = "<dict>", sha256: str | None = None) -> Scorecard:
        if not isinstance(data, dict):
            raise ScorecardError(f"{path}: a scorecard is a mapping with a `checks` list")
        try:
            spec = ScorecardSpec.model_validate(data)
        except ValidationError as exc:
            raise ScorecardError(_format_errors(path, data, exc)) from None
        if sha256 is None:
            sha256 = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        by_id: dict[str, CheckBase] = {}
        top = [_resolve(c, None, f"checks[{i}]", path, by_id) for i, c in enumerate(spec.checks)]
        _check_refs(top, by_id, path)
        return cls(path=path, sha256=sha256, name=spec.name, checks=top, by_id=by_id)

    def agent_examples(self) -> list[str]:
        """Example sentences of checks marked `agent_marker` (greeting, closing), for mono calls."""
        out: list[str] = []

        def walk(check: CheckBase | str, marked: bool) -> None:
            if isinstance(check, str):
                return
            marked = marked or check.agent_marker
            if marked and isinstance(check, SemanticCheck):
                out.extend(check.examples)
            for child in getattr(check, "checks", []):
                walk(child, marked)

        for c in self.checks:
            walk(c, False)
        return list(dict.fromkeys(out))

    def agent_likeness(self, encoder: Encoder) -> Callable[[list[str]], float]:
        """How agent-like one speaker's sentences are, for mono agent identification
        (`callqa.asr.roles.pick_agent`): the mean, over `agent_examples()`, of the best cosine
        similarity between the example and any of the sentences (0 without either).

        The examples are embedded once, here; each call embeds only the speaker's sentences.
        """
        examples = [e.strip() for e in self.agent_examples() if e.strip()]
        ex_vecs = np.asarray(encoder.encode(examples), dtype=np.float32) if examples else None

        def score(sentences: list[str]) -> float:
            if ex_vecs is None or not sentences:
                return 0.0
            vecs = np.asarray(encoder.encode(list(sentences)), dtype=np.float32)
            return float((ex_vecs @ vecs.T).max(axis=1).mean())

        return score

    def metric_paths(self) -> list[str]:
        """Every metric and event path the checks read (to test against the metrics dict)."""
        paths = []
        for c in self.by_id.values():
            if isinstance(c, MetricCheck):
                paths += [c.metric] + ([c.events] if c.events else [])
        return list(dict.fromkeys(paths))


def _resolve(check, parent, where: str, path: str, by_id: dict) -> CheckBase:
    """Give inline children ids and their parent's role/window; register ids; check roles."""
    if isinstance(check, str):
        return check
    update: dict[str, Any] = {}
    if check.id is None:
        if parent is None:
            raise ScorecardError(f"{path}: {where}: every top-level check needs an `id`")
        update["id"] = f"{parent.id}.{check.type}"
        if update["id"] in by_id:  # a second inline child of the same type
            update["id"] += where.rsplit("[", 1)[-1].rstrip("]")
    if parent is not None:
        for key in ("role", "window_s"):
            if key not in check.model_fields_set and not (
                key == "window_s" and isinstance(check, MetricCheck)
            ):
                update[key] = getattr(parent, key)
    check = check.model_copy(update=update) if update else check
    if check.id in by_id:
        raise ScorecardError(f"{path}: check id {check.id!r} is used twice; ids must be unique")
    if isinstance(check, PhraseCheck | SemanticCheck) and check.role == "call":
        raise ScorecardError(
            f"{path}: check {check.id!r}: role 'call' is for metric checks; "
            "use agent, customer or any for what is said"
        )
    by_id[check.id] = check
    if isinstance(check, CombinationCheck):
        kids = [
            _resolve(c, check, f"{where}.checks[{i}]", path, by_id)
            for i, c in enumerate(check.checks)
        ]
        check = check.model_copy(update={"checks": kids})
        by_id[check.id] = check
    return check


def _check_refs(top: list[CheckBase], by_id: dict[str, CheckBase], path: str) -> None:
    def visit(check: CheckBase, stack: tuple[str, ...]) -> None:
        for child in getattr(check, "checks", []):
            if isinstance(child, str):
                if child not in by_id:
                    raise ScorecardError(
                        f"{path}: check {check.id!r} refers to unknown check id {child!r}; "
                        f"known ids: {', '.join(by_id)}"
                    )
                if child in stack or child == check.id:
                    raise ScorecardError(
                        f"{path}: check {check.id!r}: reference cycle "
                        f"{' -> '.join((*stack, check.id, child))}"
                    )
                visit(by_id[child], (*stack, check.id))
            else:
                visit(child, (*stack, check.id))

    for c in top:
        visit(c, ())


def _format_errors(path: str, data: dict, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [x for x in err["loc"] if x not in ("phrase", "semantic", "metric", "combo", "ref")]
        check_id, node = None, data
        for part in loc:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                check_id = node["id"]  # the innermost check with an id on the error's path
        where = ".".join(str(x) for x in loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
        who = f"check {check_id!r}: " if check_id else ""
        lines.append(f"{path}: {who}{where}: {msg}")
    return "invalid scorecard:\n  " + "\n  ".join(lines)


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------
_NON_WORD = re.compile(r"[^a-z0-9'*]+")


def normalize_text(text: str) -> str:
    """Lower case, punctuation to spaces (apostrophes and ASR's `f***` asterisks kept)."""
    text = text.lower().replace("\u2019", "'")
    return " ".join(t.strip("'") for t in _NON_WORD.sub(" ", text).split() if t.strip("'"))


def _keyword_regex(keyword: str) -> str:
    # Whole words, any whitespace between them, apostrophes optional ("you're" ~ "youre").
    words = [re.escape(w).replace("'", "'?") for w in normalize_text(keyword).split()]
    return r"(?<![\w'*])" + r"\s+".join(words) + r"(?![\w'*])"


@dataclass
class Token:
    norm: str
    start: float
    end: float
    raw: int  # index into Run.raw_words


@dataclass
class Run:
    """Consecutive words of one role with no gap over MAX_WORD_GAP_S, plus segment bounds."""

    role: str
    raw_words: list[str]
    tokens: list[Token]
    segments: list[tuple[int, int]]  # token ranges [i0, i1) of the ASR segments in this run

    def text(self, i0: int, i1: int) -> str:
        return " ".join(t.norm for t in self.tokens[i0:i1])

    def raw_text(self, i0: int, i1: int) -> str:
        r0, r1 = self.tokens[i0].raw, self.tokens[i1 - 1].raw
        return " ".join(self.raw_words[r0 : r1 + 1])


def _segment_words(seg: Segment) -> list[tuple[str, float, float]]:
    words = [(w.word.strip(), w.start, w.end) for w in seg.words if w.word.strip()]
    if words:
        return words
    # No word timestamps: spread the text's words evenly over the segment.
    parts = seg.text.split()
    step = (seg.end - seg.start) / max(len(parts), 1)
    return [(w, seg.start + i * step, seg.start + (i + 1) * step) for i, w in enumerate(parts)]


def build_runs(segments: list[Segment]) -> list[Run]:
    """Split each role's words (time order) into runs of one turn.

    A run ends at a silence longer than MAX_WORD_GAP_S or where another role starts speaking in
    between (a turn change), so no candidate span joins two sides of the other party's reply.
    """
    runs: list[Run] = []
    for role in sorted({s.role for s in segments}):
        other_starts = np.array(sorted(s.start for s in segments if s.role != role))
        run: Run | None = None
        last_end = -math.inf
        for seg in sorted((s for s in segments if s.role == role), key=lambda s: s.start):
            seg_i0 = None
            for word, start, end in _segment_words(seg):
                norms = normalize_text(word).split()
                if not norms:
                    continue
                # Another role's segment starting after our last word and before this one.
                lo = np.searchsorted(other_starts, last_end, side="right")
                turn_change = lo < np.searchsorted(other_starts, start, side="left")
                if run is None or start - last_end > MAX_WORD_GAP_S or turn_change:
                    if run is not None and seg_i0 is not None:
                        run.segments.append((seg_i0, len(run.tokens)))
                    run = Run(role, [], [], [])
                    runs.append(run)
                    seg_i0 = 0
                if seg_i0 is None:
                    seg_i0 = len(run.tokens)
                run.raw_words.append(word)
                run.tokens += [Token(n, start, end, len(run.raw_words) - 1) for n in norms]
                last_end = max(last_end, end)
            if run is not None and seg_i0 is not None:
                run.segments.append((seg_i0, len(run.tokens)))
    return runs


def resolve_window(window_s: tuple[float, float] | None, duration_s: float) -> tuple[float, float]:
    """Absolute [start, end] seconds of a check window (see CheckBase.window_s)."""
    if window_s is None:
        return (-math.inf, math.inf)
    start, end = window_s
    start = duration_s + start if start < 0 else start
    end = duration_s + end if end <= 0 else end  # validated: an end <= 0 counts from the end
    return (max(start, 0.0), end)


def _runs_for(runs: list[Run], role: str) -> list[Run]:
    return [r for r in runs if role in ("any", "call") or r.role == role]


def _evidence(run: Run, i0: int, i1: int) -> Evidence:
    return Evidence(
        start=round(run.tokens[i0].start, 3),
        end=round(run.tokens[i1 - 1].end, 3),
        role=run.role,
        text=run.raw_text(i0, i1),
    )


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    passed: bool | None
    score: float
    evidence: list[Evidence]
    detail: str


class _Context:
    def __init__(self, card, segments, metrics, duration_s, encoder):
        self.card = card
        self.runs = build_runs(segments)
        self.metrics = metrics
        self.duration_s = duration_s
        self.encoder = encoder
        self.done: dict[str, Outcome] = {}

    def run(self, check: CheckBase | str) -> Outcome:
        check = self.card.by_id[check] if isinstance(check, str) else check
        if check.id not in self.done:
            fn = {
                PhraseCheck: _eval_phrase,
                SemanticCheck: _eval_semantic,
                MetricCheck: _eval_metric,
                CombinationCheck: _eval_combination,
            }[type(check)]
            self.done[check.id] = fn(check, self)
            logger.debug("check %s: %s", check.id, self.done[check.id])
        return self.done[check.id]


def evaluate(
    scorecard: Scorecard,
    segments: list[Segment],
    metrics: dict,
    duration_s: float,
    encoder: Encoder | None,
) -> tuple[list[CheckResult], float, bool]:
    """Run every top-level check on one call.

    Args:
        scorecard: a loaded `Scorecard`.
        segments: ASR segments with roles (words optional; without them times are interpolated).
        metrics: `{"call": {...}, "agent": {...}, "customer": {...}}`; null = undefined.
        duration_s: call length, for windows that count back from the end.
        encoder: sentence encoder (`encode(texts) -> (n, d)` L2-normalised); needed only when
            the scorecard has semantic checks.

    Returns:
        (check results in scorecard order, call score 0-100, critical_fail). The call score is
        100 x sum(weight x passed) / sum(weight) over checks whose `passed` is not null (100
        when none is); a failed critical check sets critical_fail and leaves the score alone.
    """
    ctx = _Context(scorecard, segments, metrics, duration_s, encoder)
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


def _eval_phrase(check: PhraseCheck, ctx: _Context) -> Outcome:
    regex = check.regex()
    w0, w1 = resolve_window(check.window_s, ctx.duration_s)
    found: list[Evidence] = []
    for run in _runs_for(ctx.runs, check.role):
        text = run.text(0, len(run.tokens))
        # Character offset of each token in `text`, to map a match back to words and times.
        offsets = np.cumsum([0] + [len(t.norm) + 1 for t in run.tokens])
        for m in regex.finditer(text):
            i0 = int(np.searchsorted(offsets, m.start(), side="right") - 1)
            i1 = int(np.searchsorted(offsets, max(m.end() - 1, m.start()), side="right"))
            if w0 <= run.tokens[i0].start <= w1:
                found.append(_evidence(run, i0, i1))
    found.sort(key=lambda e: e.start)
    where = f" at {found[0].start:.1f} s" if found else ""
    if check.mode == "require":
        passed = bool(found)
        detail = f"found {found[0].text!r}{where}" if found else "no matching phrase"
        return Outcome(passed, float(passed), found[:1], detail)
    passed = not found
    detail = f"forbidden phrase {found[0].text!r}{where}" if found else "no forbidden phrase"
    return Outcome(passed, float(passed), found, detail)


def candidate_spans(run: Run, span_words: list[int], stride: int) -> list[tuple[int, int]]:
    """Each ASR segment whole, plus sliding windows of consecutive words across the run."""
    n = len(run.tokens)
    spans = set(run.segments)
    for size in span_words:
        if n <= size:
            spans.add((0, n))
            continue
        starts = list(range(0, n - size + 1, stride))
        if starts[-1] != n - size:
            starts.append(n - size)  # so the last words are covered too
        spans.update((s, s + size) for s in starts)
    return sorted(spans)


def _eval_semantic(check: SemanticCheck, ctx: _Context) -> Outcome:
    if ctx.encoder is None:
        raise ScorecardError(f"check {check.id!r} is semantic and needs a sentence encoder")
    w0, w1 = resolve_window(check.window_s, ctx.duration_s)
    anchor = re.compile("|".join(f"(?:{a})" for a in check.anchors)) if check.anchors else None
    cands: list[tuple[Run, int, int]] = []
    for run in _runs_for(ctx.runs, check.role):
        for i0, i1 in candidate_spans(run, check.span_words, check.stride_words):
            if w0 <= run.tokens[i0].start <= w1 and (
                anchor is None or anchor.search(run.text(i0, i1))
            ):
                cands.append((run, i0, i1))
    best, best_i = 0.0, None
    if cands:
        examples = ctx.encoder.encode([normalize_text(e) for e in check.examples])
        vecs = ctx.encoder.encode([r.text(i0, i1) for r, i0, i1 in cands])
        sims = (vecs @ examples.T).max(axis=1)
        best_i = int(np.argmax(sims))
        best = float(max(sims[best_i], 0.0))
    ev = [_evidence(*cands[best_i])] if best_i is not None else []
    hit = best >= check.threshold
    quote = f"{ev[0].text!r} ({best:.2f}) at {ev[0].start:.1f} s" if ev else "no speech"
    if check.mode == "require":
        detail = f"found {quote}" if hit else f"not found; closest {quote}"
        return Outcome(hit, best, ev if hit else [], detail)
    detail = f"forbidden: {quote}" if hit else f"none found; closest {quote}"
    return Outcome(not hit, best, ev if hit else [], detail)


_UNITS = {"s": "s", "wpm": "wpm", "db": "dB", "lufs": "LUFS", "hz": "Hz", "pct": "%"}


def _lookup(metrics: dict, path: str) -> tuple[bool, Any]:
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _metric_label(check: MetricCheck) -> tuple[str, str]:
    section, _, key = check.metric.rpartition(".")
    stem, _, suffix = key.rpartition("_")
    unit = _UNITS.get(suffix, "")
    name = (stem if unit else key).replace("_", " ")
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
    for run in _runs_for(runs, role):
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
        # Inline children are named by their parent ("greeting.phrase" -> "phrase").
        kids.append((cid.removeprefix(f"{check.id}."), ctx.run(child)))
        if kids[-1][1].passed is decisive:
            break
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
