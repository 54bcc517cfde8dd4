"""Deployments `retrain/nightly` (cron flows.retrain_cron) and `score_inbox/every-15-min`
(interval flows.score_inbox_interval_s), both in flows.timezone, from params.yaml.

    python flows/deploy.py serve  [params.yaml]  # both flows served by this process
    python flows/deploy.py pool   [params.yaml]  # create the process work pool, deploy prefect.yaml
    python flows/deploy.py worker [params.yaml]  # a worker for that pool (exec: signals reach it)
    python flows/deploy.py wait                  # until PREFECT_API_URL answers /health

`make prefect-server` runs the server, `pool` and a worker. Set PREFECT_API_URL (e.g.
http://127.0.0.1:4200/api) to use a running server, and PREFECT_LOGGING_EXTRA_LOGGERS=callqa to
see callqa's own log records in the UI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, load, subprocess_env  # noqa: E402

RETRAIN, INBOX = "nightly", "every-15-min"


def serve(params: str) -> None:
    from prefect import serve as prefect_serve
    from prefect.schedules import Cron, Interval
    from retrain import retrain
    from score_inbox import score_inbox

    cfg = load(params).flows
    args = {"parameters": {"params": params}}
    prefect_serve(
        retrain.to_deployment(
            RETRAIN, schedules=[Cron(cfg.retrain_cron, timezone=cfg.timezone)], **args
        ),  # fmt: skip
        score_inbox.to_deployment(
            INBOX, schedules=[Interval(cfg.score_inbox_interval_s, timezone=cfg.timezone)], **args
        ),
    )


def deploy_env(params: str) -> dict[str, str]:
    """prefect.yaml's `{{ $VAR }}` values, from params.yaml."""
    cfg = load(params).flows
    return {
        **subprocess_env(),
        "CALLQA_ROOT": str(ROOT),
        "CALLQA_PARAMS": params,
        "CALLQA_WORK_POOL": cfg.work_pool,
        "CALLQA_RETRAIN_CRON": cfg.retrain_cron,
        "CALLQA_INBOX_INTERVAL_S": str(cfg.score_inbox_interval_s),
        "CALLQA_TIMEZONE": cfg.timezone,
    }


def pool(params: str) -> None:
    env = deploy_env(params)
    prefect = str(Path(sys.executable).parent / "prefect")
    made = subprocess.run([prefect, "work-pool", "create", env["CALLQA_WORK_POOL"], "--type",
                           "process"], env=env, capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0 and "already exists" not in made.stdout + made.stderr:
        sys.exit(made.stdout + made.stderr)
    subprocess.run([prefect, "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env, check=True)


def worker(params: str) -> None:
    env = deploy_env(params)
    prefect = str(Path(sys.executable).parent / "prefect")
    os.execve(prefect, [prefect, "worker", "start", "--pool", env["CALLQA_WORK_POOL"]], env)


def wait(timeout_s: float = 90) -> None:
    url = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api").rstrip("/") + "/health"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - local server
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    sys.exit(f"{url}: no answer after {timeout_s:g} s")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    params_path = str(Path(sys.argv[2] if len(sys.argv) > 2 else "params.yaml").resolve())
    commands = {"serve": serve, "pool": pool, "worker": worker}
    if command == "wait":
        wait()
    elif command in commands:
        commands[command](params_path)
    else:
        sys.exit(__doc__)
