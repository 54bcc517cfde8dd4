"""Call-level check F1 of the scorecard, rules-only against rules + model, on one split's calls.

It scores calls with the Scorer, so it stands above pipeline.py (here in mlops/, beside the
promotion gate that compares models the same way); `callqa evaluate` hands it to
`model.evaluate.run`.

Each call of the split is scored once by the Scorer (with the model); the rules-only answer is
the same scorecard evaluated on the same segments and metrics without the model's outputs, so
the two differ only by the model. Truth = the synth sidecar's `checks`; positive class =
violation (`passed: false`), as in benchmarks/bench_scorecard.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from callqa.config import Params
from callqa.schemas import CHECK_IDS

logger = logging.getLogger(__name__)

PHRASE_CHECKS = (
    "greeting", "identity_verification", "recording_disclosure", "closing", "forbidden_language"
)  # fmt: skip


def check_f1(truth: list[dict], predicted: list[dict], ids) -> dict[str, float | None]:
    """F1 of the violation class per check id (None when a check was never evaluated)."""
    from sklearn.metrics import f1_score

    out = {}
    for cid in ids:
        pairs = [(not t[cid], not p[cid]) for t, p in zip(truth, predicted, strict=True)
                 if t.get(cid) is not None and p.get(cid) is not None]  # fmt: skip
        if not pairs:
            out[cid] = None
            continue
        y, yhat = zip(*pairs, strict=True)
        out[cid] = round(float(f1_score(y, yhat, zero_division=0)), 4)
    return out


def call_level(predictor, params: Params, data, split: str, progress: bool = True) -> dict:
    """Score the split's synth calls; F1 per check for rules-only and rules + model."""
    import pandas as pd

    from callqa.pipeline import Scorer
    from callqa.progress import track
    from callqa.qa.evaluate import evaluate

    table = data.table
    ids = set(table.loc[(table["source"] == "synth") & (table["split"] == split), "call_id"])
    accepted = pd.read_parquet(params.featurize.accepted)
    calls = accepted[accepted["id"].isin(ids) & accepted["labels_json"].notna()]
    if calls.empty:
        return {"n_calls": 0, "f1": {}}
    score_cfg = params.score.model_copy(update={"model": predictor.path})
    scorer = Scorer(params.preprocess, params.transcribe, score_cfg, params.validate_cfg)
    truth, rules, fused, failed = [], [], [], 0
    for rec in track(calls.to_dict("records"), "evaluate calls", enabled=progress):
        try:
            res = scorer.score_path(Path(rec["path"])).result
        except Exception as err:  # noqa: BLE001 - count it and go on
            logger.warning("%s: %s", rec["path"], err)
            failed += 1
            continue
        checks, _, _ = evaluate(
            scorer.scorecard, res.segments, res.metrics, res.duration_s, scorer.encoder, None
        )
        truth.append(json.loads(rec["labels_json"])["checks"])
        fused.append({c.id: c.passed for c in res.checks})
        rules.append({c.id: c.passed for c in checks})
    all_ids = [c for c in CHECK_IDS if truth and c in truth[0]]
    return {
        "n_calls": len(truth),
        "failed": failed,
        "f1": {
            "rules": check_f1(truth, rules, all_ids),
            "rules_model": check_f1(truth, fused, all_ids),
        },
        "phrase_checks": list(PHRASE_CHECKS),
    }
