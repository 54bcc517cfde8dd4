"""Serving overhead: `callqa serve` over HTTP against `Scorer.score_bytes` in one process.

The calls: the first 30 s of fresh stereo synth calls (a seed range no test uses), each sent
once per configuration, and each configuration on a fresh transcript cache, so no answer comes
from the cache. In-process: one Scorer, models loaded before timing, the calls one after
another. Server: `callqa serve --model local` (the same Scorer that params.yaml builds) in a
subprocess, warmed with one request; latency p50 / p95 with one client, then calls per minute
with 1, 2 and 4 concurrent clients. Goal: serving overhead under 10% (latency p50 and calls
per minute with one client against in-process).

    python benchmarks/bench_serve.py [--n 12] [--seed 770000]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def make_calls(n: int, seed: int, work: Path) -> list[bytes]:
    import io

    import soundfile as sf

    from callqa.config import load_params
    from callqa.data import synth

    params = load_params(ROOT / "params.yaml")
    cfg = params.synth.model_copy(update={"seed": seed})
    synth.run(cfg, params.preprocess.vad, out_dir=work / "calls", n_calls=n, progress=False)
    out = []
    for path in sorted((work / "calls").glob("*.wav")):
        x, sr = sf.read(path, dtype="int16", always_2d=True)
        buf = io.BytesIO()
        sf.write(buf, x[: 30 * sr], sr, format="WAV", subtype="PCM_16")
        out.append(buf.getvalue())
    return out


def in_process(calls: list[bytes]) -> list[float]:
    from callqa.config import load_params
    from callqa.pipeline import Scorer

    p = load_params(ROOT / "params.yaml")
    scorer = Scorer(p.preprocess, p.transcribe, p.score, p.validate_cfg)
    scorer.score_bytes(calls[0], "warmup")
    times = []
    for data in calls[1:]:
        t0 = time.perf_counter()
        scorer.score_bytes(data, "call")
        times.append(time.perf_counter() - t0)
    return times


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served(calls: list[bytes], clients: int, cache: Path) -> tuple[list[float], float]:
    """(per-request latencies, wall seconds for all but the warm-up call) with `clients`."""
    import httpx

    port = _port()
    env = {**os.environ, "CALLQA_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "callqa.cli", "serve", "--model", "local", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=600) as http:
            for _ in range(300):
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            http.post("/v1/score", content=calls[0], headers={"Content-Type": "audio/wav"})

        def one(data: bytes) -> float:
            with httpx.Client(base_url=base, timeout=600) as c:
                t0 = time.perf_counter()
                res = c.post("/v1/score", content=data, headers={"Content-Type": "audio/wav"})
                res.raise_for_status()
                return time.perf_counter() - t0

        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(one, calls[1:]))
        return latencies, time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="calls per configuration (first = warm-up)")
    ap.add_argument("--seed", type=int, default=770000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="callqa-bench-serve-"))
    calls = make_calls(args.n, args.seed, work)
    n = len(calls) - 1
    os.environ["CALLQA_CACHE_DIR"] = str(work / "cache-inproc")
    base = in_process(calls)
    base_p50 = float(np.median(base))
    base_cpm = 60 * n / sum(base)
    print(f"calls: {n} x 30 s stereo (+1 warm-up), fresh cache per configuration")
    print(f"in-process Scorer.score_bytes: p50 {base_p50:.2f} s, p95 "
          f"{np.percentile(base, 95):.2f} s, {base_cpm:.1f} calls/min")  # fmt: skip
    for clients in (1, 2, 4):
        lat, wall = served(calls, clients, work / f"cache-{clients}")
        cpm = 60 * n / wall
        line = f"serve, {clients} client(s): p50 {np.median(lat):.2f} s, p95 "
        line += f"{np.percentile(lat, 95):.2f} s, {cpm:.1f} calls/min"
        if clients == 1:
            line += (f"  (overhead: latency p50 {np.median(lat) / base_p50 - 1:+.1%}, "
                     f"throughput {base_cpm / cpm - 1:+.1%}; goal < 10%)")  # fmt: skip
        print(line, flush=True)


if __name__ == "__main__":
    main()
