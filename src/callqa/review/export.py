"""Reviews -> labels: what people said about each reviewed call, as one Parquet table.

`callqa review export` writes one row per reviewed call (`review.labels_out`, a DVC output that
`callqa featurize` reads): the human truth of every reviewed check (the latest review counts; an
N/A answer is no label), the intents that truth implies for the model, where a present intent
was said (the system's evidence, when the reviewer agreed with it), and the transcript with the
reviewers' corrections applied. A call scored by several model versions is one row: for each
check the latest review across them counts.

Check -> intent. A scorecard check whose children include a `model` check for an intent says
whether that intent was heard: an `any` check passes when it was (greeting: passed = heard), a
`none` check passes when it was not (forbidden_language: passed = not heard). Other checks
(metrics such as dead air) label no intent.

Example:
    >>> summary = run(store, scorecard, Path("data/review/labels.parquet"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from callqa.files import atomic_path
from callqa.review.store import ReviewStore, human_label

logger = logging.getLogger(__name__)

COLUMNS = [
    "call_id", "audio_sha256", "audio_path", "agent", "in_random_share", "model_version",
    "reviewed_at", "n_labels", "checks", "intents", "intent_evidence", "segments",
]  # fmt: skip


@dataclass(frozen=True)
class IntentCheck:
    intent: str
    passed_means_heard: bool  # `any` check: True; `none` check: False


def intent_checks(scorecard) -> dict[str, IntentCheck]:
    """check id -> the intent its `model` child reads, for the scorecard's top-level checks."""
    out: dict[str, IntentCheck] = {}
    for check in scorecard.checks:
        kind = getattr(check, "type", None)
        if kind not in ("any", "none"):
            continue
        for child in getattr(check, "checks", []):
            child = scorecard.by_id.get(child, child) if isinstance(child, str) else child
            if getattr(child, "type", None) == "model":
                out[check.id] = IntentCheck(child.intent, kind == "any")
                break
    return out


def call_label(
    result: dict,
    reviews: dict[str, tuple[bool, bool | None]],
    corrections: dict[int, str],
    mapping: dict[str, IntentCheck],
) -> dict:
    """One reviewed call's labels.

    Args:
        result: the QA result as scored (segments, checks with evidence).
        reviews: check id -> (human truth of `passed`, the system's `passed`).
        corrections: segment index -> corrected text.
        mapping: `intent_checks` of the scorecard.
    """
    checks_by_id = {c["id"]: c for c in result.get("checks", [])}
    segments = []
    for i, seg in enumerate(result.get("segments", [])):
        text = corrections.get(i, seg.get("text", ""))
        segments.append({"role": seg["role"], "start": seg["start"], "end": seg["end"],
                         "text": text, "corrected": i in corrections})  # fmt: skip
    intents: dict[str, int] = {}
    evidence: dict[str, list[list[float]]] = {}
    for check_id, (truth, system) in reviews.items():
        if check_id not in mapping:
            continue
        m = mapping[check_id]
        heard = truth if m.passed_means_heard else not truth
        intents[m.intent] = int(heard)
        # Where it was heard: the system's evidence, when the system also heard it (an agreed
        # pass of an `any` check, an agreed fail of a `none` check). Otherwise unknown.
        system_heard = None if system is None else (system if m.passed_means_heard else not system)
        if heard and system_heard:
            ev = checks_by_id.get(check_id, {}).get("evidence", [])
            spans = [[e["start"], e["end"]] for e in ev if e.get("role") in ("agent", None)]
            if spans:
                evidence[m.intent] = spans
    return {
        "checks": json.dumps({k: bool(v[0]) for k, v in sorted(reviews.items())}),
        "intents": json.dumps(intents, sort_keys=True),
        "intent_evidence": json.dumps(evidence, sort_keys=True),
        "segments": json.dumps(segments),
        "n_labels": len(reviews),
    }


def label_table(store: ReviewStore, scorecard):
    """The labels DataFrame (COLUMNS), one row per reviewed call, ordered by call id."""
    import pandas as pd

    mapping = intent_checks(scorecard)
    by_call: dict[str, dict] = {}
    for review in store.latest_reviews(per_call=True):  # oldest first
        truth = human_label(review)
        call = by_call.setdefault(review.call_id, {"reviews": {}, "scored": {}, "at": None})
        call["scored"][review.scored_call_id] = review.id
        call["at"] = max(filter(None, [call["at"], review.created_at]))
        if truth is not None:
            call["reviews"][review.check_id] = (truth, review.system_answer)
    rows = []
    for call_id, call in sorted(by_call.items()):
        if not call["reviews"]:
            continue
        # the scored row reviewed last speaks for the call (its transcript and evidence)
        latest_scored = max(call["scored"], key=call["scored"].get)
        scored = store.get_scored(latest_scored)
        fixes = {c.segment_index: c.corrected_text for c in store.corrections(latest_scored)}
        label = call_label(json.loads(scored.result_json), call["reviews"], fixes, mapping)
        rows.append({
            "call_id": call_id, "audio_sha256": scored.audio_sha256,
            "audio_path": scored.audio_path, "agent": scored.agent,
            "in_random_share": bool(scored.in_random_share),
            "model_version": scored.model_version, "reviewed_at": call["at"], **label,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def run(store: ReviewStore | None, scorecard, out: Path) -> dict:
    """Write the labels table to `out` (an empty table when there is no database or no review,
    so the DVC stage always has its output); returns a summary."""
    import pandas as pd

    table = label_table(store, scorecard) if store is not None else pd.DataFrame(columns=COLUMNS)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        table.to_parquet(tmp, index=False)
    intents = [json.loads(s) for s in table["intents"]]
    return {
        "calls": len(table),
        "labels": int(table["n_labels"].sum()) if len(table) else 0,
        "calls_with_intents": sum(1 for i in intents if i),
        "corrected_lines": sum(
            sum(s["corrected"] for s in json.loads(segs)) for segs in table["segments"]
        ),
        "out": str(out),
    }
