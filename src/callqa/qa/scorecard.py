"""QA scorecard: a YAML file -> validated checks (`Scorecard`), with errors a user can fix.

A scorecard (`scorecards/*.yaml`) lists checks of seven types: `phrase` (keywords / regex),
`semantic` (MiniLM similarity to example sentences), `metric` (bounds on a call metric), `model`
(the trained model's intent probabilities) and the combinations `any` / `all` / `none`.
`callqa.qa.evaluate.evaluate()` runs them on one call.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import numpy as np
import regex
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    FiniteFloat,
    PositiveInt,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from callqa.audio.metrics import call_metrics
from callqa.config import INTENTS, UniqueKeyLoader, load_setting
from callqa.text.normalize import normalize_text

CheckRole = Literal["agent", "customer", "any", "call"]
ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"
# Scorecard patterns run on the `regex` engine (re-compatible syntax) with this limit per search:
# a pattern that backtracks catastrophically leaves its check out of one call's score instead of
# hanging the batch (or the server).
REGEX_TIMEOUT_S = 1.0
MAX_WEIGHT = 1000.0
# Keyword characters that only separate words, like spaces ("thank you." / "e-mail").
_SEPARATORS = '.,;:!?"()[]{}-/\u2013\u2014\u2026'


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
    window_s: tuple[FiniteFloat, FiniteFloat] | None = None
    weight: float = Field(1.0, ge=0, le=MAX_WEIGHT, allow_inf_nan=False)
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

    @field_validator("keywords")
    @classmethod
    def _plain_words(cls, keywords: list[str]) -> list[str]:
        for k in keywords:
            _check_keyword(k)
        return keywords

    @field_validator("patterns")
    @classmethod
    def _valid_patterns(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            _check_regex(p, "pattern", regex.IGNORECASE)
        return patterns

    @model_validator(mode="after")
    def _something_to_find(self) -> PhraseCheck:
        if not self.keywords and not self.patterns:
            raise ValueError("a phrase check needs `keywords` or `patterns`")
        return self

    def regexes(self) -> list[regex.Pattern]:
        """What to search for, in order: the keywords as one regex, then each pattern on its own
        (so inline flags, group names and backreferences mean what they mean alone)."""
        joined = "|".join(map(_keyword_regex, self.keywords))
        out = [regex.compile(joined, regex.IGNORECASE)] if self.keywords else []
        return out + [regex.compile(p, regex.IGNORECASE) for p in self.patterns]


class SemanticCheck(CheckBase):
    """Cosine similarity of the role's speech spans to example sentences."""

    type: Literal["semantic"]
    mode: Literal["require", "forbid"] = "require"
    examples: list[str] = Field(min_length=1)
    threshold: float = Field(gt=0, le=1)
    # Sliding windows of consecutive words, so a phrase buried in a long segment is found.
    span_words: list[PositiveInt] = Field([6, 10, 15], min_length=1)
    stride_words: int = Field(3, ge=1)
    # Regexes (on normalised text); when given, only spans matching one are compared. Embeddings
    # of short, ASR-garbled spans drift: a word like "identity" in a misheard company name can
    # reach the threshold alone, so the span must also say something on topic.
    anchors: list[str] = []

    @field_validator("anchors")
    @classmethod
    def _anchor_regexes(cls, anchors: list[str]) -> list[str]:
        for a in anchors:
            _check_regex(a, "anchor")
        return anchors

    def anchor_regexes(self) -> list[regex.Pattern]:
        """The anchors, each compiled on its own (a span needs to match one of them)."""
        return [regex.compile(a) for a in self.anchors]


class MetricCheck(CheckBase):
    """Bounds on a metric (`section.key` in the metrics dict); null metric -> not evaluated."""

    type: Literal["metric"]
    metric: str = Field(pattern=r"^\w+(\.\w+)+$")
    min: FiniteFloat | None = None  # pass when value >= min
    max: FiniteFloat | None = None  # pass when value <= max
    above: FiniteFloat | None = None  # pass when value > above
    below: FiniteFloat | None = None  # pass when value < below
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
        lower = [(k, getattr(self, k)) for k in ("min", "above") if getattr(self, k) is not None]
        upper = [(k, getattr(self, k)) for k in ("max", "below") if getattr(self, k) is not None]
        for lo_key, lo in lower:
            for hi_key, hi in upper:
                if lo > hi or (lo == hi and (lo_key, hi_key) != ("min", "max")):
                    raise ValueError(f"{lo_key} {lo:g} and {hi_key} {hi:g}: no value can pass")
        return self


class ModelCheck(CheckBase):
    """The trained model's probability for one intent, per segment of the role (the Scorer
    passes the table in). Passes when a segment starting in the window reaches the threshold;
    without a model it is not evaluated, and combinations leave it out."""

    type: Literal["model"]
    role: CheckRole = "agent"
    intent: str
    threshold: float | None = Field(None, gt=0, le=1)  # None: the model's own, from training

    @field_validator("intent")
    @classmethod
    def _known_intent(cls, intent: str) -> str:
        if intent not in INTENTS:
            raise ValueError(f"unknown intent {intent!r}; use one of {', '.join(INTENTS)}")
        return intent


def _child_tag(v: Any) -> str | None:
    if isinstance(v, str):
        return "ref"
    t = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
    return "combo" if t in ("any", "all", "none") else t


class CombinationCheck(CheckBase):
    """`any`: one child passes; `all`: every child passes; `none`: no child passes."""

    type: Literal["any", "all", "none"]
    checks: list[ChildCheck] = Field(min_length=1)


_CHECK_TYPES = "phrase, semantic, metric, model, any, all, none"
_type_error = {
    "custom_error_type": "unknown_check_type",
    "custom_error_message": f"missing or unknown check `type`; use one of {_CHECK_TYPES}",
}
AnyCheck = Annotated[
    Annotated[PhraseCheck, Tag("phrase")]
    | Annotated[SemanticCheck, Tag("semantic")]
    | Annotated[MetricCheck, Tag("metric")]
    | Annotated[ModelCheck, Tag("model")]
    | Annotated[CombinationCheck, Tag("combo")],
    Discriminator(_child_tag, **_type_error),
]
# A child is an inline check or the id of another check in the same scorecard.
ChildCheck = Annotated[
    Annotated[str, Tag("ref")]
    | Annotated[PhraseCheck, Tag("phrase")]
    | Annotated[SemanticCheck, Tag("semantic")]
    | Annotated[MetricCheck, Tag("metric")]
    | Annotated[ModelCheck, Tag("model")]
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

        Unlike `from_dict` (for any metrics dict), it also checks that every metric and event
        path is one `callqa.audio.metrics.call_metrics` writes.

        Raises:
            ScorecardError: unreadable file, bad YAML (aliases and duplicate keys included),
                unknown key, type or metric, bad id reference.
        """
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise ScorecardError(f"{p}: cannot read scorecard: {exc.strerror}") from exc
        try:
            data = load_yaml_strict(raw, str(p))
        except ValueError as exc:
            raise ScorecardError(str(exc)) from None
        card = cls.from_dict(data, path=str(p), sha256=hashlib.sha256(raw).hexdigest())
        _check_metric_paths(card, str(p))
        return card

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
        """Example sentences of the checks marked `agent_marker`, for mono agent identification."""
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
    if isinstance(check, PhraseCheck | SemanticCheck | ModelCheck) and check.role == "call":
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


@functools.cache
def known_metrics() -> dict[str, bool]:
    """Every `section.key` path of the metrics dict -> whether it is an event list. Read off
    what `call_metrics` writes for an empty call (all keys are there, most values null)."""
    sample = call_metrics({}, None, 0.0, None, None, mono=False)
    return {
        f"{section}.{key}": isinstance(value, list)
        for section, values in sample.items()
        for key, value in values.items()
    }


def _check_metric_paths(card: Scorecard, path: str) -> None:
    known = known_metrics()
    for check in card.by_id.values():
        if not isinstance(check, MetricCheck):
            continue
        for key, is_list in (("metric", False), ("events", True)):
            value = getattr(check, key)
            if value is None or known.get(value) is is_list:
                continue
            choices = [k for k, v in known.items() if v is is_list]
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(choices)}"
            kind = "event list" if is_list else "metric"
            raise ScorecardError(
                f"{path}: check {check.id!r}: {key}: unknown {kind} {value!r}; {hint}"
            )


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
        tags = ("phrase", "semantic", "metric", "model", "combo", "ref")
        loc = [x for x in err["loc"] if x not in tags]
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


def _keyword_regex(keyword: str) -> str:
    # Whole words, any whitespace between them, apostrophes optional ("you're" ~ "youre").
    words = [regex.escape(w).replace("'", "'?") for w in normalize_text(keyword).split()]
    return r"(?<![\w'*])" + r"\s+".join(words) + r"(?![\w'*])"


def _check_keyword(keyword: str) -> None:
    """Transcripts are matched as plain words (`normalize_text`): a keyword must be words too,
    or it finds something else ("$$$" everything, "c++" the letter c)."""
    words = normalize_text(keyword)
    if not words:
        raise ValueError(f"keyword {keyword!r} has no letters or digits: it would match any call")
    symbols = sorted(
        {c for c in keyword if not (c.isalnum() or c.isspace() or c in "'\u2019*" + _SEPARATORS)}
    )
    if symbols:
        raise ValueError(
            f"keyword {keyword!r}: transcripts are plain words, so {''.join(symbols)!r} is "
            f"dropped and it would match {words!r}; spell symbols out as they are spoken"
        )


def _check_regex(pattern: str, what: str, flags: int = 0) -> None:
    """Compile `pattern` as evaluation does; ValueError naming it when it is invalid."""
    try:
        regex.compile(pattern, flags)
    except regex.error as exc:
        raise ValueError(f"{what} {pattern!r} is not a valid regex: {exc}") from None


class _StrictLoader(UniqueKeyLoader):
    """No key twice in a mapping, and no aliases (no "billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                problem=f"aliases (*{event.anchor}) are not allowed", problem_mark=event.start_mark
            )
        return super().compose_node(parent, index)


def load_yaml_strict(text: str | bytes, name: str) -> Any:
    """`yaml.safe_load`, but aliases and duplicate keys are errors.

    Raises:
        ValueError: one line, "NAME: not valid YAML: line N: problem".
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValueError(f"{name}: not valid YAML: {where}{' '.join(problem.split())}") from None


def load_with_encoder(scorecard: Path, sentence_encoder: str) -> tuple[Scorecard, Encoder]:
    """The scorecard and the sentence encoder (`score.scorecard`, `score.sentence_encoder`),
    both loaded now.

    Raises:
        ConfigError: either cannot be loaded; the message names the params.yaml key.
    """
    from callqa.text.encoder import get_encoder

    card = load_setting("score.scorecard", scorecard, Scorecard.load)
    encoder = load_setting("score.sentence_encoder", sentence_encoder, get_encoder)
    load_setting("score.sentence_encoder", sentence_encoder, lambda _: encoder.dim)
    return card, encoder
