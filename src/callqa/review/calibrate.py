"""Reviews -> how well the system agrees with people, per check, and better model thresholds.

Truth is the reviewer's label (`store.human_label`: agree keeps the system's answer, disagree
flips it, na is left out). Positive class = violation (a failed check), as in the project's
check F1 (`mlops/calls.py`). Every figure is computed for three shares of the reviewed calls:

    random  the fixed random share (`review.random_share`): reviewed whatever the queue's order,
            so its figures are the unbiased estimates;
    rest    the "teach-first" rest, chosen because they looked hard (probabilities near a
            threshold, rules and model disagreeing): biased toward errors;
    all     both together (biased as far as the rest outweighs the random share).

Intervals: Wilson score 95% for the proportions (agreement, precision, recall); F1 is not a
proportion, so its interval is a percentile bootstrap over the labelled verdicts (fixed seed).

Thresholds of model checks: calls are split in two halves by a hash of call id and seed; the
threshold maximising F1 on half A (candidates: the distinct probabilities seen) is reported
with its F1 on half B next to the current threshold's F1 on half B (the honest comparison).

The gate's side (`review_agreement`) scores reviewed calls with a pipeline handed in, so this
module needs nothing from mlops/.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from callqa.config import Params
from callqa.review.store import CheckVerdict, Review, ReviewStore, ScoredCall, human_label

logger = logging.getLogger(__name__)

Z_95 = 1.959964  # two-sided 95% normal quantile
BOOTSTRAP_ROUNDS = 1000  # enough for a stable 95% percentile interval on a few hundred labels
SHARES = ("random", "rest", "all")
SHARE_LABELS = {
    "random": "random share (unbiased)",
    "rest": "teach-first rest (biased toward hard calls)",
    "all": "all reviewed (biased)",
}


@dataclass(frozen=True)
class Labelled:
    """One reviewed verdict: what the system said and what the latest review says is true."""

    call_id: str
    check_id: str
    random_share: bool
    system_passed: bool
    human_passed: bool
    probability: float | None
    threshold: float | None
    method: str
    model_version: str


# ---------------------------------------------------------------- loading


def load_labelled(store: ReviewStore, model_version: str | None = None) -> tuple[list, int]:
    """The latest review of every (scored call, check) joined with the system's verdict;
    returns (labelled verdicts, number of `na` reviews left out)."""
    reviews = store.latest_reviews(model_version=model_version)
    with store.session() as s:
        q = select(CheckVerdict, ScoredCall).join(
            ScoredCall, ScoredCall.id == CheckVerdict.scored_call_id
        )
        reviewed = select(Review.scored_call_id)  # a subquery: no limit on bound parameters
        rows = {(v.scored_call_id, v.check_id): (v, c) for v, c in s.execute(
            q.where(CheckVerdict.scored_call_id.in_(reviewed)))}  # fmt: skip
    out, n_na = [], 0
    for r in reviews:
        truth = human_label(r)
        if truth is None or (r.scored_call_id, r.check_id) not in rows:
            n_na += 1
            continue
        v, call = rows[(r.scored_call_id, r.check_id)]
        out.append(Labelled(
            call_id=call.call_id, check_id=r.check_id, random_share=bool(call.in_random_share),
            system_passed=bool(r.system_answer), human_passed=truth, probability=v.probability,
            threshold=v.threshold, method=v.method, model_version=call.model_version,
        ))  # fmt: skip
    return out, n_na


# ---------------------------------------------------------------- statistics


def wilson(k: int, n: int, z: float = Z_95) -> tuple[float | None, float | None]:
    """Wilson score interval of the proportion k/n ((None, None) when n is 0); unlike the
    normal approximation it stays inside [0, 1] and is honest at 0/n and n/n."""
    if n == 0:
        return None, None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def _proportion(k: int, n: int) -> dict:
    lo, hi = wilson(k, n)
    return {"value": round(k / n, 4) if n else None, "lo": lo, "hi": hi, "k": k, "n": n}


def _f1(tp, fp, fn):
    """F1 of counts (arrays allowed); NaN where there is no violation in truth nor answers."""
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def bootstrap_f1(truth_v: np.ndarray, pred_v: np.ndarray, seed: int) -> tuple:
    """Percentile-bootstrap 95% interval of F1 (violation class) over labelled verdicts."""
    n = len(truth_v)
    if n == 0:
        return None, None
    idx = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_ROUNDS, n))
    t, p = truth_v[idx], pred_v[idx]
    f1 = _f1((t & p).sum(1), (~t & p).sum(1), (t & ~p).sum(1))
    f1 = f1[~np.isnan(f1)]
    if not f1.size:
        return None, None
    return round(float(np.quantile(f1, 0.025)), 4), round(float(np.quantile(f1, 0.975)), 4)


def share_stats(system_passed: Iterable[bool], human_passed: Iterable[bool], seed: int) -> dict:
    """Agreement, precision / recall / F1 of the violation class with intervals and counts."""
    from sklearn.metrics import confusion_matrix

    pred_v = ~np.asarray(list(system_passed), dtype=bool)
    truth_v = ~np.asarray(list(human_passed), dtype=bool)
    n = len(truth_v)
    if n == 0:
        return {"n": 0}
    tn, fp, fn, tp = (int(x) for x in confusion_matrix(truth_v, pred_v, labels=[False, True])
                      .ravel())  # fmt: skip
    f1 = float(_f1(np.array(tp), np.array(fp), np.array(fn)))
    lo, hi = bootstrap_f1(truth_v, pred_v, seed)
    return {
        "n": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "agreement": _proportion(tp + tn, n),
        "precision": _proportion(tp, tp + fp),
        "recall": _proportion(tp, tp + fn),
        "f1": {"value": None if math.isnan(f1) else round(f1, 4), "lo": lo, "hi": hi},
    }  # fmt: skip


def by_share(rows: list[Labelled], seed: int) -> dict[str, dict]:
    """share_stats for the random share, the rest and all of `rows`."""
    parts = {
        "random": [r for r in rows if r.random_share],
        "rest": [r for r in rows if not r.random_share],
        "all": rows,
    }
    return {
        share: share_stats([r.system_passed for r in part], [r.human_passed for r in part], seed)
        for share, part in parts.items()
    }


# ---------------------------------------------------------------- thresholds


def half_of(call_id: str, seed: int) -> str:
    """ "A" or "B": a fixed half per call (and seed), so a call scored by two model versions
    never lands in both halves."""
    return "AB"[hashlib.sha256(f"{seed}:half:{call_id}".encode()).digest()[0] & 1]


def hit_passes(rows: list[Labelled]) -> bool:
    """Whether the model reaching its threshold makes the check pass (greeting found) or
    fail (a `none` combination: a forbidden intent found), read from the system's answers."""
    votes = [(r.probability >= r.threshold) == r.system_passed for r in rows]
    return sum(votes) * 2 >= len(votes)


def predicted_violation(probs: np.ndarray, threshold, passes_on_hit: bool) -> np.ndarray:
    hit = probs >= threshold
    return ~hit if passes_on_hit else hit


def _f1_at(truth_v: np.ndarray, pred_v: np.ndarray) -> float | None:
    f1 = float(_f1((truth_v & pred_v).sum(), (~truth_v & pred_v).sum(), (truth_v & ~pred_v).sum()))
    return None if math.isnan(f1) else round(f1, 4)


def propose_threshold(rows: list[Labelled], seed: int, min_reviews: int) -> dict:
    """The F1-best threshold on half A and its F1 on half B, beside the current threshold's.

    Only verdicts that carry the model's probability take part (where a rule decided, the
    threshold changes nothing). Ties on half A go to the candidate nearest the current
    threshold: the smallest change that does as well.
    """
    rows = [r for r in rows if r.probability is not None and r.threshold is not None]
    halves = {h: [r for r in rows if half_of(r.call_id, seed) == h] for h in "AB"}
    current = float(np.median([r.threshold for r in rows])) if rows else None
    out: dict = {"current": current, "n_a": len(halves["A"]), "n_b": len(halves["B"]),
                 "min_reviews": min_reviews, "proposed": None}  # fmt: skip
    truth_a = np.array([not r.human_passed for r in halves["A"]], dtype=bool)
    if min(out["n_a"], out["n_b"]) < min_reviews:
        out["status"] = (f"not enough reviews: {out['n_a']} in half A, {out['n_b']} in half B; "
                         f"{min_reviews} needed in each")  # fmt: skip
        return out
    if not truth_a.any() or truth_a.all():
        out["status"] = "not enough reviews: half A needs both violations and passes"
        return out
    passes_on_hit = hit_passes(rows)
    probs_a = np.array([r.probability for r in halves["A"]])
    candidates = np.unique(probs_a)
    f1_a = [_f1_at(truth_a, predicted_violation(probs_a, t, passes_on_hit)) or 0.0
            for t in candidates]  # fmt: skip
    best = max(f1_a)
    ties = [t for t, f in zip(candidates, f1_a, strict=True) if f == best]
    proposed = float(min(ties, key=lambda t: (abs(t - current), t)))
    truth_b = np.array([not r.human_passed for r in halves["B"]], dtype=bool)
    probs_b = np.array([r.probability for r in halves["B"]])
    current_b = np.array([r.threshold for r in halves["B"]])
    f1_b_current = _f1_at(truth_b, predicted_violation(probs_b, current_b, passes_on_hit))
    f1_b_proposed = _f1_at(truth_b, predicted_violation(probs_b, proposed, passes_on_hit))
    # Half B decides: a threshold that only looks better where it was chosen is kept out.
    better = f1_b_proposed is not None and (f1_b_current is None or f1_b_proposed > f1_b_current)
    out.update(
        status="proposed",
        recommendation="use the proposed threshold" if better else "keep the current threshold",
        proposed=round(proposed, 4),
        passes_on_hit=passes_on_hit,
        f1_a_proposed=round(best, 4),
        f1_b_current=f1_b_current,
        f1_b_proposed=f1_b_proposed,
        curve={"threshold": [round(float(t), 4) for t in candidates], "f1_a": f1_a,
               "f1_b": [_f1_at(truth_b, predicted_violation(probs_b, t, passes_on_hit))
                        for t in candidates]},
    )  # fmt: skip
    return out


# ---------------------------------------------------------------- the whole report


def calibrate(rows: list[Labelled], seed: int, min_reviews: int) -> dict:
    """All figures of the report: per check (by share, and a threshold proposal for checks
    the model decided) and over all checks."""
    checks = {}
    for cid in dict.fromkeys(r.check_id for r in rows):
        mine = [r for r in rows if r.check_id == cid]
        methods = sorted({r.method for r in mine})
        entry = {"methods": methods, "shares": by_share(mine, seed), "threshold": None}
        if any(r.probability is not None for r in mine):
            entry["threshold"] = propose_threshold(mine, seed, min_reviews)
        checks[cid] = entry
    return {
        "n_labelled": len(rows),
        "n_calls": len({r.call_id for r in rows}),
        "model_versions": sorted({r.model_version for r in rows}),
        "share_labels": SHARE_LABELS,
        "overall": by_share(rows, seed),
        "checks": checks,
    }


def flat_metrics(report: dict) -> dict[str, float]:
    """The report's headline numbers as MLflow metric names: `<check>.<figure>.<share>`."""
    out: dict[str, float] = {}
    for cid, entry in [("overall", {"shares": report["overall"]}), *report["checks"].items()]:
        for share, st in entry["shares"].items():
            out[f"{cid}.n.{share}"] = st["n"]
            for fig in ("agreement", "precision", "recall", "f1"):
                if st.get(fig, {}).get("value") is not None:
                    out[f"{cid}.{fig}.{share}"] = st[fig]["value"]
        t = entry.get("threshold") or {}
        for key in ("proposed", "current", "f1_b_current", "f1_b_proposed"):
            if t.get(key) is not None:
                out[f"{cid}.threshold.{key}"] = t[key]
    return out


def run(
    params: Params,
    store: ReviewStore,
    out_dir: Path | None = None,
    model_version: str | None = None,
) -> dict:
    """Write calibration.html and calibration.json under `out_dir` (default
    review.calibration_out) and log them to MLflow (a run named `calibrate`); returns a
    summary for the CLI."""
    from callqa import tracking
    from callqa.files import atomic_path
    from callqa.review.calibration_report import render

    cfg = params.review
    out_dir = Path(out_dir or cfg.calibration_out)
    rows, n_na = load_labelled(store, model_version)
    report = calibrate(rows, cfg.calibration_seed, cfg.calibration_min_reviews)
    settings = {"seed": cfg.calibration_seed, "min_reviews": cfg.calibration_min_reviews,
                "model_version": model_version or "all"}  # fmt: skip
    report.update(n_na=n_na, settings=settings, intervals="Wilson 95%; F1: bootstrap 95%")
    out_dir.mkdir(parents=True, exist_ok=True)
    html, js = out_dir / "calibration.html", out_dir / "calibration.json"
    with atomic_path(js) as tmp:
        tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
    with atomic_path(html) as tmp:
        tmp.write_text(render(report), encoding="utf-8")
    tracking.configure(params.mlflow)
    with tracking.run("calibrate", tags={"callqa.stage": "calibrate"}):
        tracking.log_params(settings)
        tracking.log_metrics(flat_metrics(report))
        tracking.log_artifact(html)
        tracking.log_artifact(js)
    proposed = {c: e["threshold"]["proposed"] for c, e in report["checks"].items()
                if e["threshold"] and e["threshold"]["proposed"] is not None}  # fmt: skip
    agreement = report["overall"]["random"].get("agreement", {}).get("value")
    logger.info("calibration: %d labelled verdicts on %d calls -> %s", len(rows),
                report["n_calls"], html)  # fmt: skip
    return {"labelled": len(rows), "na": n_na, "calls": report["n_calls"],
            "agreement (random share)": agreement if agreement is not None else "-",
            "proposed thresholds": proposed,
            "better on half B": [c for c, e in report["checks"].items() if (e["threshold"] or {})
                                 .get("recommendation") == "use the proposed threshold"],
            "report": str(html)}  # fmt: skip


# ---------------------------------------------------------------- the promotion gate's side


@dataclass(frozen=True)
class ReviewedCall:
    """A reviewed call with audio on disk and the latest human truth per check."""

    call_id: str
    audio_path: Path
    labels: dict[str, bool]


def reviewed_calls(store: ReviewStore) -> list[ReviewedCall]:
    """Calls with a labelled review and their audio on disk; the latest review per (call,
    check) counts across every model version that scored the call."""
    reviews = store.latest_reviews(per_call=True)
    with store.session() as s:
        paths = dict(s.execute(select(ScoredCall.call_id, ScoredCall.audio_path)
                               .where(ScoredCall.audio_path.is_not(None))
                               .order_by(ScoredCall.id)).all())  # fmt: skip
    labels: dict[str, dict[str, bool]] = {}
    for r in reviews:
        truth = human_label(r)
        if truth is not None:
            labels.setdefault(r.call_id, {})[r.check_id] = truth
    return [ReviewedCall(cid, Path(paths[cid]), lab) for cid, lab in sorted(labels.items())
            if cid in paths and Path(paths[cid]).is_file()]  # fmt: skip


def agreement(labels: list[dict[str, bool]], predicted: list[dict[str, bool | None]]) -> float:
    """Share of the human-labelled (call, check) pairs the answers match. A check the answers
    leave unevaluated (None) counts as a miss: people said it applies."""
    pairs = [(truth, pred.get(cid)) for lab, pred in zip(labels, predicted, strict=True)
             for cid, truth in lab.items()]  # fmt: skip
    return round(sum(t == p for t, p in pairs) / len(pairs), 4) if pairs else float("nan")


def review_agreement(score: Callable[[bytes, str], dict], calls: list[ReviewedCall]) -> dict:
    """`review_agreement` of a scoring function (e.g. a pipeline's `score_bytes`) on the
    reviewed calls, with the number of labelled pairs it rests on."""
    predicted = []
    for call in calls:
        result = score(call.audio_path.read_bytes(), call.audio_path.name)
        predicted.append({c["id"]: c.get("passed") for c in result["checks"]})
    labels = [c.labels for c in calls]
    return {"review_agreement": agreement(labels, predicted),
            "review_agreement_n": sum(len(x) for x in labels)}  # fmt: skip
