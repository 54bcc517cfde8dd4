"""Review app speed: the queue and call pages with 10,000 scored calls in SQLite.

Fills a fresh SQLite review database through `ReviewStore.add_scored` (the path `callqa score`
takes), then times GET requests through the whole FastAPI app of `callqa serve` in-process
(Starlette's TestClient: routing, session check, queries, HTML; no network). Target: under
200 ms per page. Figures (waveform PNGs, drawn once per call and cached) are not part of the
page: they load as separate images.

    PYTHONPATH=src python benchmarks/bench_review.py [--calls 10000] [--requests 50]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from review_data import make_result  # noqa: E402 - valid QAResult lines without models

from callqa.config import ReviewConfig, ServeConfig  # noqa: E402

TARGET_MS = 200.0
PASSWORD = "bench-password"


class NoModel:
    def current_version(self):
        return None  # the scoring API is not what this measures


def fill(store, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    checks = ["greeting", "closing", "dead_air", "overtalk", "forbidden_language"]
    for i in range(n):
        fail = tuple(c for c in checks if rng.random() < 0.15)
        r = make_result(f"{i:016x}", p_greeting=rng.random(), fail=fail, model=rng.random() < 0.8)
        store.add_scored(r, "bench", agent=f"agent-{rng.randrange(40):02d}",
                         critical_checks=["forbidden_language"])  # fmt: skip


def timed(client, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (url, r.status_code)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=50)
    args = ap.parse_args()
    from fastapi.testclient import TestClient

    from callqa.mlops.serve import create_app
    from callqa.review.sinks import open_store
    from callqa.review.web import review_router

    tmp = Path(tempfile.mkdtemp(prefix="callqa-bench-review-"))
    cfg = ReviewConfig(db_url=f"sqlite:///{tmp / 'review.db'}", secret_file=tmp / "secret",
                       figure_cache_dir=tmp / "figures")  # fmt: skip
    store = open_store(cfg)
    t0 = time.perf_counter()
    fill(store, args.calls)
    fill_s = time.perf_counter() - t0
    print(f"filled {args.calls} scored calls in {fill_s:.1f} s "
          f"({args.calls / fill_s:.0f} calls/s through add_scored)")  # fmt: skip
    store.add_user("bench", PASSWORD)
    rng = random.Random(1)
    for sid in rng.sample(range(1, args.calls + 1), args.calls // 10):  # 10% reviewed
        store.add_review(sid, "greeting", "bench", rng.choice(["agree", "disagree", "na"]))
    app = create_app(NoModel(), ServeConfig(), routers=[review_router(store, cfg)])
    with TestClient(app) as client:
        page = client.get("/review/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        client.post("/review/login", data={"username": "bench", "password": PASSWORD,
                                           "csrf": token})  # fmt: skip
        ids = rng.sample(range(1, args.calls + 1), args.requests)
        cases = {
            "queue (default order)": ["/review/"] * args.requests,
            "queue filtered (critical, check, unreviewed)": [
                "/review/?critical=1&check=forbidden_language&reviewed=0"] * args.requests,
            "queue page 100, by score": ["/review/?order=score&page=100"] * args.requests,
            "call page": [f"/review/calls/{i}" for i in ids],
        }  # fmt: skip
        worst = 0.0
        print(f"{'page':48s} {'median ms':>10s} {'p95 ms':>8s} {'max ms':>8s}")
        for name, urls in cases.items():
            timed(client, urls[0], 3)  # warm-up
            ms = [timed(client, u, 1)[0] for u in urls]
            p95 = statistics.quantiles(ms, n=20)[-1]
            worst = max(worst, p95)
            print(f"{name:48s} {statistics.median(ms):10.1f} {p95:8.1f} {max(ms):8.1f}")
    verdict = "PASS" if worst < TARGET_MS else "FAIL"
    print(f"{verdict}: worst p95 {worst:.1f} ms vs target {TARGET_MS:.0f} ms "
          f"({args.calls} scored calls, SQLite)")  # fmt: skip
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
