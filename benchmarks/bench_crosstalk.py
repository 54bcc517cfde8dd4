"""Stereo calls whose channels leak into each other (echo), scored with and without
`preprocess.crosstalk`: overtalk, words per role and check outcomes against the same calls
without a leak.

Each channel gets a copy of the other, `--levels` dB down and 20 ms late. The reference is the
clean call's own result (so this measures how far a leak moves the scorer, not accuracy).

    python benchmarks/bench_crosstalk.py [--n 4] [--seed 915000] [--levels -40 -30 -20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=915000)
    ap.add_argument("--levels", type=float, nargs="+", default=[-40.0, -30.0, -20.0])
    args = ap.parse_args()

    import numpy as np
    import soundfile as sf

    from callqa.config import load_params
    from callqa.data import synth
    from callqa.pipeline import Scorer

    work = Path(tempfile.mkdtemp(prefix="callqa-xtalk-"))
    os.environ["CALLQA_CACHE_DIR"] = str(work / "cache")
    params = load_params(ROOT / "params.yaml")
    synth.run(
        params.synth.model_copy(update={"seed": args.seed}),
        params.preprocess.vad,
        out_dir=work / "calls",
        n_calls=args.n,
        progress=False,
    )
    calls = sorted((work / "calls").glob("*.wav"))
    rules = params.score.model_copy(update={"model": None})
    scorers = {
        on: Scorer(params.preprocess.model_copy(update={"crosstalk": on}), params.transcribe, rules)
        for on in (False, True)
    }

    def summary(result) -> dict:
        words = {"agent": 0, "customer": 0}
        for seg in result.segments:
            words[seg.role] = words.get(seg.role, 0) + len(seg.text.split())
        return {
            "overtalk_s": result.metrics["call"]["overtalk_s"],
            "words": words,
            "checks": {c.id: c.passed for c in result.checks},
        }

    rows = {}
    for path in calls:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        clean = summary(scorers[True].score(path))
        delay = int(0.02 * sr)
        for db in args.levels:
            y = x.copy()
            g = np.float32(10 ** (db / 20))
            y[delay:, 0] += g * x[:-delay, 1]
            y[delay:, 1] += g * x[:-delay, 0]
            leaky = work / f"{path.stem}_{int(db)}.wav"
            sf.write(leaky, y, sr, subtype="PCM_16")
            for on, scorer in scorers.items():
                got = summary(scorer.score(leaky))
                same = sum(got["checks"][k] == v for k, v in clean["checks"].items())
                word_gap = sum(abs(got["words"][r] - clean["words"][r]) for r in clean["words"])
                row = rows.setdefault((db, on), [0.0, 0.0, 0, 0, 0, 0])
                row[0] += got["overtalk_s"]
                row[1] += clean["overtalk_s"]
                row[2] += word_gap
                row[3] += sum(clean["words"].values())
                row[4] += same
                row[5] += len(clean["checks"])
    print(f"{len(calls)} stereo calls (seed {args.seed}); reference: the same calls without a leak")
    head = ("leak", "crosstalk", "overtalk s (clean)", "words off", "checks same")
    print(f"{head[0]:>6} {head[1]:>9} {head[2]:>20} {head[3]:>12} {head[4]:>12}")
    for (db, on), (ot, ot0, gap, total, same, n) in sorted(rows.items()):
        print(f"{db:6.0f} {str(on):>9} {ot:10.1f} ({ot0:5.1f}) {gap:7d}/{total:<5d} {same:5d}/{n}")


if __name__ == "__main__":
    sys.exit(main())
