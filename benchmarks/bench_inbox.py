"""`score_inbox` throughput with 1 and 2 workers (the Prefect flow, ephemeral server).

Fresh stereo synth calls (a seed range no test uses) are dropped into a temporary inbox; the
flow scores them with params.yaml's own Scorer (`model=local`) on a fresh transcript cache,
once with `flows.workers: 1` (one thread) and once with 2 (a local Dask cluster of two
processes, each loading its own models). Wall time includes the flow's start and, for 2
workers, the cluster's start and both workers' model loading.

    python benchmarks/bench_inbox.py [--n 8] [--seed 771000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=771000)
    args = ap.parse_args()

    from callqa.config import load_params
    from callqa.data import synth

    work = Path(tempfile.mkdtemp(prefix="callqa-bench-inbox-"))
    params = load_params(ROOT / "params.yaml")
    cfg = params.synth.model_copy(update={"seed": args.seed})
    synth.run(cfg, params.preprocess.vad, out_dir=work / "calls", n_calls=args.n, progress=False)
    calls = sorted((work / "calls").glob("*.wav"))
    audio_s = sum(__import__("soundfile").info(str(p)).duration for p in calls)
    print(f"{len(calls)} stereo calls, {audio_s:.0f} s of audio")
    for workers in (1, 2):
        run = work / f"w{workers}"
        data = yaml.safe_load((ROOT / "params.yaml").read_text())
        data["flows"].update(
            inbox_dir=str(run / "inbox"), results_dir=str(run / "results"),
            done_dir=str(run / "done"), quarantine_dir=str(run / "quarantine"),
            ledger=str(run / "ledger.sqlite"), workers=workers,
        )  # fmt: skip
        (run / "inbox").mkdir(parents=True)
        for p in calls:
            shutil.copy(p, run / "inbox" / p.name)
        pfile = run / "params.yaml"
        pfile.write_text(yaml.safe_dump(data))
        env = {**os.environ, "CALLQA_CACHE_DIR": str(run / "cache")}
        code = (
            "import sys; sys.path.insert(0, 'flows'); from score_inbox import score_inbox; "
            f"print(score_inbox({str(pfile)!r}, 'local'))"
        )
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                             capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - t0
        done = len(list((run / "done").glob("*.wav")))
        if res.returncode != 0:
            print(res.stdout[-2000:], res.stderr[-2000:])
        print(f"{workers} worker(s): {wall:.1f} s wall, {done}/{len(calls)} done, "
              f"{60 * done / wall:.1f} calls/min, {audio_s / wall:.1f}x real time")  # fmt: skip


if __name__ == "__main__":
    main()
