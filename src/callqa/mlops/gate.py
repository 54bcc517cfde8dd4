"""The promotion gate: the frozen evaluation calls, each version's metrics on them, the rules.

`callqa promote` (registry.py) loads the candidate and production versions and hands them here:
both score the same calls in turn, call by call, each on a fresh transcript cache of its own,
and `judge` compares the two metric sets with the margins of `registry.gate` in params.yaml.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from callqa.cache import CACHE_ENV
from callqa.config import Params
from callqa.mlops.calls import check_f1

# ---------------------------------------------------------------- the evaluation set


def eval_calls(params: Params) -> list[Path]:
    """The frozen evaluation calls (synthesised once from the `test` bank, then reused)."""
    from callqa.data import synth

    gate = params.registry.gate
    folder = Path(gate.eval_calls)
    calls = sorted(folder.glob("*.wav"))
    if len(calls) < gate.eval_n_calls:
        cfg = params.synth.model_copy(update={"seed": gate.eval_seed, "phrase_bank": "test"})
        synth.run(cfg, params.preprocess.vad, out_dir=folder, n_calls=gate.eval_n_calls,
                  progress=False)  # fmt: skip
        calls = sorted(folder.glob("*.wav"))
    return calls[: gate.eval_n_calls]


def gate_metrics(scored: list[tuple[Path, dict, float]]) -> dict[str, float | None]:
    """check F1 per check (violation class), their macro mean, emotion macro-F1 over both
    roles (None without a model), and scoring seconds per audio second, from one version's
    (call, result, seconds) on the evaluation calls."""
    from sklearn.metrics import f1_score

    truth, predicted, emo_true, emo_pred = [], [], [], []
    seconds = audio_s = 0.0
    for path, result, spent in scored:
        sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        seconds += spent
        audio_s += result["duration_s"]
        truth.append(sidecar["checks"])
        predicted.append({c["id"]: c["passed"] for c in result["checks"]})
        for role, label in (sidecar.get("emotion") or {}).items():
            got = ((result.get("emotion") or {}).get(role) or {}).get("label")
            if got is not None:
                emo_true.append(label)
                emo_pred.append(got)
    ids = [c for c in truth[0] if c in predicted[0]]
    per_check = check_f1(truth, predicted, ids)
    # No violation in truth nor in the answers: F1 is undefined; for the gate that is perfect
    # agreement (1.0), so a candidate's false alarms on such a check count as a drop.
    for cid in ids:
        if not any(
            t.get(cid) is False or p.get(cid) is False
            for t, p in zip(truth, predicted, strict=True)
        ):
            per_check[cid] = 1.0
    known = [v for v in per_check.values() if v is not None]
    out: dict[str, float | None] = {f"check_f1.{k}": v for k, v in per_check.items()}
    out["check_macro_f1"] = round(sum(known) / len(known), 4) if known else None
    out["emotion_macro_f1"] = (
        round(float(f1_score(emo_true, emo_pred, average="macro")), 4) if emo_true else None
    )
    out["x_real_time"] = round(seconds / audio_s, 4) if audio_s else None
    out["n_calls"] = len(scored)
    return out


@contextmanager
def cache_at(folder: str):
    """`$CALLQA_CACHE_DIR` set to `folder` for the block."""
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = folder
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CACHE_ENV)
        else:
            os.environ[CACHE_ENV] = before


def evaluate_versions(loaded: list[tuple], calls: list[Path]) -> list[dict]:
    """Gate metrics of each loaded version on the same calls, scored in turn call by call
    (which version goes first alternates), so x_real_time compares the versions under the same
    load of the machine: timings taken at different moments are not comparable."""
    scored: list[list] = [[] for _ in loaded]
    for i, path in enumerate(calls):
        data = path.read_bytes()
        order = range(len(loaded)) if i % 2 == 0 else reversed(range(len(loaded)))
        for v in order:
            pipeline, cache = loaded[v]
            with cache_at(cache):
                t0 = time.perf_counter()
                result = pipeline.score_bytes(data, path.name)
                scored[v].append((path, result, time.perf_counter() - t0))
    return [gate_metrics(s) for s in scored]


def agreement_metrics(loaded: list[tuple], review_url: str) -> list[dict]:
    """`review_agreement` of each loaded version on the reviewed calls whose audio is on disk
    (read at every promotion: reviews keep coming); empty dicts when there are none."""
    from callqa.review.calibrate import review_agreement, reviewed_calls
    from callqa.review.store import ReviewStore

    calls = reviewed_calls(ReviewStore(review_url))
    if not calls:
        return [{} for _ in loaded]
    out = []
    for pipeline, cache in loaded:
        with cache_at(cache):
            out.append(review_agreement(pipeline.score_bytes, calls))
    return out


# ---------------------------------------------------------------- the rules


def judge(candidate: dict, production: dict | None, params: Params) -> tuple[bool, list[str]]:
    """The gate: (passes, reasons), one reason per rule that decided or failed."""
    gate = params.registry.gate
    if production is None:
        return True, ["no production version yet: the first candidate is promoted"]
    reasons, ok = [], True
    p_new, p_old = candidate.get(gate.primary), production.get(gate.primary)
    if p_new is None or (p_old is not None and p_new < p_old + gate.min_improvement):
        ok = False
        reasons.append(f"{gate.primary} {p_new} does not beat production's {p_old} by "
                       f"{gate.min_improvement}")  # fmt: skip
    else:
        verdict = "improves" if p_old is None or p_new > p_old else "holds (not worse)"
        reasons.append(f"{gate.primary} {p_new} vs production's {p_old}: {verdict}")
    for metric, old in production.items():
        family = metric.split(".")[0]
        if family not in gate.max_drop or old is None or metric == gate.primary:
            continue
        new = candidate.get(metric)
        if new is None or new < old - gate.max_drop[family]:
            ok = False
            reasons.append(
                f"{metric} drops from {old} to {new} (more than {gate.max_drop[family]})"
            )
    old_rt, new_rt = production.get("x_real_time"), candidate.get("x_real_time")
    if old_rt and new_rt and new_rt > old_rt * (1 + gate.max_x_real_time_growth):
        ok = False
        reasons.append(f"x_real_time grows from {old_rt} to {new_rt} "
                       f"(more than {gate.max_x_real_time_growth:.0%})")  # fmt: skip
    if gate.review_agreement:
        ok &= _agreement_rule(candidate, production, gate.max_agreement_drop, reasons)
    if ok:
        reasons.append("no gated metric drops past its margin")
    return ok, reasons


def _agreement_rule(candidate: dict, production: dict, max_drop: float, reasons: list) -> bool:
    """Agreement with people's latest labels on reviewed calls may drop by at most `max_drop`."""
    new, old = candidate.get("review_agreement"), production.get("review_agreement")
    if old is None:
        reasons.append("review_agreement: no reviewed calls with audio on disk, not gated")
        return True
    n = production.get("review_agreement_n")
    if new is None or new < old - max_drop:
        reasons.append(f"review_agreement drops from {old} to {new} on {n} reviewed checks "
                       f"(more than {max_drop})")  # fmt: skip
        return False
    reasons.append(f"review_agreement {new} vs production's {old} on {n} reviewed checks")
    return True
