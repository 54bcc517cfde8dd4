"""Per-check precision, recall and F1 of the default scorecard on fresh synthetic calls.

Positive class = violation (`passed: false`). Calls come from a seed range no test uses and the
`heldout` phrase bank; the stereo table plus the same table for mono and 8 kHz telephone calls.

    python benchmarks/bench_scorecard.py [--n 200] [--n-variant 60] [--seed 914000]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="stereo calls")
    ap.add_argument("--n-variant", type=int, default=60, help="mono and telephone calls each")
    ap.add_argument("--seed", type=int, default=914000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--phrase-bank",
        default="heldout",
        choices=["heldout", "train"],
        help="heldout (default; unseen by the scorecard author) or train, for comparison",
    )
    args = ap.parse_args()

    from callqa.config import load_params
    from callqa.data import synth
    from callqa.pipeline import Scorer

    work = args.workdir or Path(tempfile.mkdtemp(prefix="callqa-bench-"))
    os.environ.setdefault("CALLQA_CACHE_DIR", str(work / "cache"))
    params = load_params(ROOT / "params.yaml")
    scorer = Scorer(params.preprocess, params.transcribe, params.score)
    variants = [
        ("stereo", args.n, {}),
        ("mono", args.n_variant, {"channels": "mono"}),
        ("telephone 8 kHz stereo", args.n_variant, {"telephone": True}),
    ]
    out = []
    for i, (name, n, over) in enumerate(variants):
        if n <= 0:
            continue
        cfg = params.synth.model_copy(
            update={"seed": args.seed + i, "phrase_bank": args.phrase_bank, **over}
        )
        folder = work / name.split()[0]
        t0 = time.perf_counter()
        synth.run(cfg, out_dir=folder, n_calls=n, progress=False)
        t_synth = time.perf_counter() - t0
        truth, pred, audio_s = [], [], 0.0
        t0 = time.perf_counter()
        for wav in sorted(folder.glob("*.wav")):
            res = scorer.score(wav)
            if not hasattr(res, "checks"):
                print(f"  {wav.name}: {res.error.code} {res.error.message}")
                continue
            truth.append(json.loads(wav.with_suffix(".json").read_text())["checks"])
            pred.append({c.id: c.passed for c in res.checks})
            audio_s += res.duration_s
        t_score = time.perf_counter() - t0
        out += table(f"{name} (seed {args.seed + i}, {args.phrase_bank} phrases)", truth, pred)
        out.append(
            f"audio {audio_s:.0f} s; synth {t_synth:.0f} s; scoring {t_score:.0f} s "
            f"({audio_s / max(t_score, 1e-9):.1f}x real time)"
        )
        print("\n".join(out[-12:]), flush=True)
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
