"""A QA result -> the per-check rows the review store keeps, and where the call goes in the queue.

Pure functions (dicts in, values out). The result JSON carries a model check's probability and
threshold only in its `detail` text (CONTRACTS.md: "its `detail` names the threshold"), so they
are read from there.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

# evaluate.py writes "greeting p=0.81 >= threshold 0.50 (model) at 3.2 s" or
# "no segment with greeting p >= threshold 0.50 (model); highest 0.31".
_THRESHOLD = re.compile(r"threshold (\d+(?:\.\d+)?)")
_PROB = re.compile(r"\bp=(\d+(?:\.\d+)?)|highest (\d+(?:\.\d+)?)")
# Children of a combination check are shown as "name: detail; name: detail".
_CHILD = re.compile(r"(?:^|; )([\w.-]+): ")
# How close to its threshold a probability must be to count as "near" (share of the full
# distance 0.5): p within 0.25 of the threshold scores above 0.5.
NEAR_SCALE = 0.5
DISAGREEMENT_BONUS = 1.0  # rules and model disagreeing outranks any closeness


@dataclass(frozen=True)
class Verdict:
    """The system's answer for one check, as stored in `check_verdicts`."""

    check_id: str
    passed: bool | None
    score: float
    probability: float | None
    threshold: float | None
    method: str  # rules | model | rules+model
    critical: bool
    evidence_json: str
    # A combination check whose deciding child was the model while rule children ran first
    # and found nothing (combinations run their children in order and stop at the decisive one).
    disagreement: bool


def model_figures(detail: str) -> tuple[float | None, float | None]:
    """(probability, threshold) a model check's detail names, or (None, None)."""
    t = _THRESHOLD.search(detail)
    if t is None:
        return None, None
    p = _PROB.search(detail)
    prob = float(p.group(1) or p.group(2)) if p else None
    return prob, float(t.group(1))


def check_method(detail: str) -> str:
    """`model` when only the model decided, `rules+model` when rule children were shown too."""
    prob, threshold = model_figures(detail)
    if threshold is None:
        return "rules"
    children = _CHILD.findall(detail)
    return "rules+model" if len(children) > 1 or (children and prob is None) else "model"


def verdicts(
    result: dict, critical_checks: set[str] | frozenset[str] = frozenset()
) -> list[Verdict]:
    """One Verdict per check of a QA result (a `callqa score` line as a dict)."""
    out = []
    for c in result.get("checks", []):
        detail = c.get("detail", "") or ""
        prob, threshold = model_figures(detail)
        method = check_method(detail)
        # Only the deciding children are shown: a pass shown as the model child alone means
        # the rule children (listed before it in our scorecards) ran and found nothing.
        children = _CHILD.findall(detail)
        disagreement = c.get("passed") is True and len(children) == 1 and "model" in children[0]
        out.append(
            Verdict(
                check_id=c["id"],
                passed=c.get("passed"),
                score=float(c.get("score", 0.0)),
                probability=prob,
                threshold=threshold,
                method=method,
                critical=c["id"] in critical_checks,
                evidence_json=json.dumps(c.get("evidence", [])),
                disagreement=disagreement,
            )
        )
    return out


def priority(rows: list[Verdict]) -> float:
    """How much a review of this call teaches: the model's closest call to a threshold
    (1 = exactly on it, 0 = 0.5 or more away) plus DISAGREEMENT_BONUS when rules and model
    disagreed on any check. Calls without model figures get 0."""
    closeness = [
        max(0.0, 1.0 - abs(v.probability - v.threshold) / NEAR_SCALE)
        for v in rows
        if v.probability is not None and v.threshold is not None
    ]
    bonus = DISAGREEMENT_BONUS if any(v.disagreement for v in rows) else 0.0
    return round(max(closeness, default=0.0) + bonus, 6)


def in_random_share(call_id: str, seed: int, share: float) -> bool:
    """Whether a call is drawn into the fixed random share: a uniform draw from sha256 of
    seed and call id, so the same call is always in or out for a given seed and share, and
    reviews of that share estimate agreement without the queue's ordering bias."""
    digest = hashlib.sha256(f"{seed}:{call_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return u < share


def model_version(result: dict) -> str:
    """The model a result used, as a short stable string (`rules-only` without a model)."""
    model = result.get("model")
    if not model:
        return "rules-only"
    where = model.get("uri") or model.get("path") or "?"
    return f"{where}@{str(model.get('sha256', ''))[:12]}"
