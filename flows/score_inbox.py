"""`score_inbox`: every new audio file in flows.inbox_dir is scored exactly once
(callqa.mlops.inbox: content-hash ledger, done/ and quarantine/), one Prefect task per file.

Fan-out: `flows.dask_address` set -> that Dask cluster (prefect-dask); else `flows.workers`
local workers (1: a thread; more: a temporary Dask LocalCluster of processes, scratch space in
a temp dir). Each worker process builds its Scorer once. Publishes the markdown artifact
`callqa-score-inbox` (counts).

Run once: `PYTHONPATH=src python flows/score_inbox.py [params.yaml] [model]` (model: an MLflow
URI, default flows.model_uri, or `local` for params.yaml's own Scorer).
"""

from __future__ import annotations

import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load  # noqa: E402  (first: it sets the offline defaults)
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

_SCORERS: dict = {}  # (params, model) -> Scorer, one per worker process
_SINKS: dict = {}  # params -> the review database's on_result (or None), one per process
_LOCK = threading.Lock()


def _sink(params: str):
    """Results also go to the review database (review.enabled); opened once per process."""
    with _LOCK:
        if params not in _SINKS:
            from callqa.cli_flows import review_sink

            _SINKS[params] = review_sink(load(params))
        return _SINKS[params]


def _scorer(params: str, model: str):
    with _LOCK:
        if (params, model) not in _SCORERS:
            from callqa.cli_flows import scorer_factory

            _SCORERS[params, model] = scorer_factory(load(params), model)()
        return _SCORERS[params, model]


@task(name="scan-inbox")
def scan_inbox(params: str) -> list[str]:
    """Finish dead runs' claims, then list the settled audio files in the inbox."""
    from callqa.mlops.inbox import Ledger, recover, scan

    cfg = load(params).flows
    recovered = recover(cfg, Ledger(cfg.ledger))
    paths = [str(p) for p in scan(cfg)]
    get_run_logger().info("%d file(s) in %s (%d recovered)", len(paths), cfg.inbox_dir, recovered)
    return paths


@task(name="process-file")
def process_file(path: str, params: str, model: str) -> str:
    """One file, exactly once: scored, quarantined, or a duplicate moved aside."""
    from callqa.mlops.inbox import process_one

    outcome = process_one(
        Path(path), lambda: _scorer(params, model), load(params).flows, on_result=_sink(params)
    )
    get_run_logger().info("%s: %s", Path(path).name, outcome)
    return outcome


def task_runner(cfg):
    """The runner for the fan-out (see the module doc)."""
    if cfg.dask_address or cfg.workers > 1:
        from prefect_dask import DaskTaskRunner

        if cfg.dask_address:
            return DaskTaskRunner(address=cfg.dask_address)
        return DaskTaskRunner(cluster_kwargs={
            "n_workers": cfg.workers, "threads_per_worker": 1, "processes": True,
            "dashboard_address": None, "local_directory": tempfile.mkdtemp(prefix="callqa-dask-"),
        })  # fmt: skip
    return ThreadPoolTaskRunner(max_workers=1)


@flow(name="score_inbox-fan-out")
def fan_out(paths: list[str], params: str, model: str, retries: int, delay: float) -> list[str]:
    runner = process_file.with_options(retries=retries, retry_delay_seconds=delay)
    futures = runner.map(paths, params=params, model=model)
    results = [f.result(raise_on_failure=False) for f in futures]
    return [r if isinstance(r, str) else "failed" for r in results]


def summary_markdown(cfg, counts: dict, model: str) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items())
    return (
        f"# callqa score_inbox\n\nmodel `{model}`; inbox `{cfg.inbox_dir}`\n\n"
        f"| outcome | files |\n|---|---|\n{rows}\n\n"
        f"results: `{Path(cfg.results_dir) / 'results.jsonl'}` (HTML reports beside it); "
        f"done: `{cfg.done_dir}`; quarantine: `{cfg.quarantine_dir}`\n"
    )


@flow(name="score_inbox", log_prints=True)
def score_inbox(params: str = "params.yaml", model: str | None = None) -> dict:
    """Scan the inbox and score each new file once (flows section of params.yaml)."""
    from callqa.mlops.inbox import OUTCOMES

    params = str(Path(params).resolve())
    cfg = load(params).flows
    model = model or cfg.model_uri
    paths = scan_inbox(params)
    outcomes = []
    if paths:
        sub = fan_out.with_options(task_runner=task_runner(cfg))
        outcomes = sub(paths, params, model, cfg.retries, cfg.retry_delay_s)
    counts = dict.fromkeys(OUTCOMES, 0) | dict(Counter(outcomes))
    create_markdown_artifact(
        markdown=summary_markdown(cfg, counts, model),
        key="callqa-score-inbox",
        description=f"score_inbox: {len(paths)} file(s)",
    )
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} file(s) failed; left in the inbox for next time")
    return counts


if __name__ == "__main__":
    score_inbox(*sys.argv[1:3])
