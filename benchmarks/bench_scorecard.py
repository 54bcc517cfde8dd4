"""Per-check precision, recall and F1 of the default scorecard on fresh synthetic calls.

Positive class = violation (`passed: false`). Calls come from a seed range no test uses and the
`test` phrase bank (default; `test2` and `test3`, a second and a third held-out bank; `dev` and
`train` for comparison); the stereo table plus the same table for mono and 8 kHz telephone calls.

Two truths for the metric checks: the sidecar's measured labels (computed with the same VAD and
metric code as the checks, so agreement with them measures consistency) and the planned values
(planned silence > 5.0 s, planned agent overtalk >= 1.0 s, planned agent rate outside the
scorecard's bounds), which share no code with scoring, so a bug common to both cannot hide.

With a trained model (score.model, or `--model DIR`) each call is scored once; the rules-only
table is the same scorecard evaluated on the same segments and metrics without the model's
outputs, so the two tables differ only by the model. `--no-model` scores with the rules only.

    python benchmarks/bench_scorecard.py [--n 200] [--n-variant 60] [--seed 914000] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]


def table(name: str, truth: list[dict], pred: list[dict]) -> list[str]:
    from sklearn.metrics import precision_recall_fscore_support

    from callqa.schemas import CHECK_IDS

    lines = [
        f"\n{name}: {len(truth)} calls",
        f"{'check':24s} {'viol.':>5s} {'P':>6s} {'R':>6s} {'F1':>6s} {'acc':>6s} {'n/a':>4s}",
    ]
    for cid in CHECK_IDS:
        pairs = [
            (not t[cid], not p[cid]) for t, p in zip(truth, pred, strict=True) if p[cid] is not None
        ]
        na = len(truth) - len(pairs)
        if not pairs:
            lines.append(f"{cid:24s} {'-':>5s} {'not evaluated':>27s} {na:4d}")
            continue
        y, yhat = zip(*pairs, strict=True)
        p, r, f, _ = precision_recall_fscore_support(y, yhat, average="binary", zero_division=0)
        acc = sum(a == b for a, b in pairs) / len(pairs)
        lines.append(f"{cid:24s} {sum(y):5d} {p:6.3f} {r:6.3f} {f:6.3f} {acc:6.3f} {na:4d}")
    return lines


def planned_checks(planned: dict, rate_check) -> dict[str, bool]:
    """Metric checks (True = compliant) from a sidecar's planned values and the rules' limits."""
    wpm = planned["agent_rate_wpm"]
    bounds = (
        (rate_check.min is None or wpm >= rate_check.min)
        and (rate_check.max is None or wpm <= rate_check.max)
        and (rate_check.above is None or wpm > rate_check.above)
        and (rate_check.below is None or wpm < rate_check.below)
    )
    return {
        "dead_air": not any(g > 5.0 for g in planned["dead_air_s"]),
        "overtalk": not any(o >= 1.0 for o in planned["overtalk_s"]),
        "agent_speech_rate": bounds,
    }


def planned_table(measured: list[dict], planned: list[dict], pred: list[dict]) -> list[str]:
    """Agreement of the checks with measured labels and with planned values (metric checks)."""
    lines = [
        "metric checks against measured labels and planned values "
        "(acc = share of calls where the check agrees; n/a calls left out)",
        f"{'check':24s} {'planned viol.':>13s} {'acc measured':>12s} {'acc planned':>11s} "
        f"{'measured != planned':>19s}",
    ]
    for cid in PLANNED_IDS:
        rows = [
            (m[cid], pl[cid], p[cid])
            for m, pl, p in zip(measured, planned, pred, strict=True)
            if p[cid] is not None
        ]
        if not rows:
            lines.append(f"{cid:24s} {'not evaluated':>13s}")
            continue
        viol = sum(not pl for _, pl, _ in rows)
        acc_m = sum(m == p for m, _, p in rows) / len(rows)
        acc_p = sum(pl == p for _, pl, p in rows) / len(rows)
        differ = sum(m != pl for m, pl, _ in rows)
        lines.append(f"{cid:24s} {viol:13d} {acc_m:12.3f} {acc_p:11.3f} {differ:19d}")
    return lines


PLANNED_IDS = ("dead_air", "overtalk", "agent_speech_rate")


def main() -> None:
    from callqa.data.phrases import BANK_NAMES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="stereo calls")
    ap.add_argument("--n-variant", type=int, default=60, help="mono and telephone calls each")
    ap.add_argument("--seed", type=int, default=914000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--phrase-bank",
        default="test",
        choices=BANK_NAMES,
        help="test (default; written once, never tuned on), test2 and test3 (a second and a third"
        " held-out bank, never read by the developer), dev (seen) or train, for comparison",
    )
    ap.add_argument(
        "--only", choices=["stereo", "mono", "telephone"], default=None,
        help="run one variant (same seeds as in the full run)",
    )  # fmt: skip
    ap.add_argument("--model", type=Path, default=None, help="trained model (default score.model)")
    ap.add_argument("--no-model", action="store_true", help="rules only")
    args = ap.parse_args()

    from callqa.config import load_params
    from callqa.data import synth
    from callqa.pipeline import Scorer
    from callqa.qa.evaluate import evaluate

    work = args.workdir or Path(tempfile.mkdtemp(prefix="callqa-bench-"))
    os.environ.setdefault("CALLQA_CACHE_DIR", str(work / "cache"))
    params = load_params(ROOT / "params.yaml")
    model_dir = None if args.no_model else (args.model or params.score.model)
    if model_dir is not None and not Path(model_dir).exists():
        print(f"no trained model at {model_dir}: rules only")
        model_dir = None
    score_cfg = params.score.model_copy(update={"model": model_dir})
    scorer = Scorer(params.preprocess, params.transcribe, score_cfg)
    rate_check = scorer.scorecard.by_id["agent_speech_rate"]
    variants = [
        ("stereo", args.n, {}),
        ("mono", args.n_variant, {"channels": "mono"}),
        ("telephone 8 kHz stereo", args.n_variant, {"telephone": True}),
    ]
    out = []
    for i, (name, n, over) in enumerate(variants):
        if n <= 0 or (args.only and not name.startswith(args.only)):
            continue
        cfg = params.synth.model_copy(
            update={"seed": args.seed + i, "phrase_bank": args.phrase_bank, **over}
        )
        folder = work / name.split()[0]
        t0 = time.perf_counter()
        synth.run(cfg, params.preprocess.vad, out_dir=folder, n_calls=n, progress=False)
        t_synth = time.perf_counter() - t0
        truth, planned, pred, rules, audio_s = [], [], [], [], 0.0
        t0 = time.perf_counter()
        for wav in sorted(folder.glob("*.wav")):
            res = scorer.score(wav)
            if not hasattr(res, "checks"):
                print(f"  {wav.name}: {res.error.code} {res.error.message}")
                continue
            sidecar = json.loads(wav.with_suffix(".json").read_text())
            truth.append(sidecar["checks"])
            planned.append(planned_checks(sidecar["planned"], rate_check))
            pred.append({c.id: c.passed for c in res.checks})
            if model_dir is not None:
                checks, _, _ = evaluate(
                    scorer.scorecard, res.segments, res.metrics, res.duration_s, scorer.encoder
                )
                rules.append({c.id: c.passed for c in checks})
            audio_s += res.duration_s
        t_score = time.perf_counter() - t0
        title = f"{name} (seed {args.seed + i}, {args.phrase_bank} phrases)"
        if model_dir is not None:
            out += table(f"{title}, rules only", truth, rules)
            title += f", rules + model ({model_dir})"
        out += table(title, truth, pred)
        out += planned_table(truth, planned, pred)
        out.append(
            f"audio {audio_s:.0f} s; synth {t_synth:.0f} s; scoring {t_score:.0f} s "
            f"({audio_s / max(t_score, 1e-9):.1f}x real time)"
        )
        print("\n".join(out[-26:]), flush=True)
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
