"""`retrain`: `dvc repro -f export` (reviewers' latest labels, when the target is downstream of
them), `dvc repro <target>` (default `evaluate`, which reruns whatever upstream stage changed:
featurize only when the labels did), then `callqa register` and the gated `callqa promote`, as
Prefect tasks with retries.
Publishes the markdown artifact `callqa-retrain` (metrics and the promotion decision).

Run once: `PYTHONPATH=src python flows/retrain.py [params.yaml] [target] [dvc.yaml]`
(the demo: `... demo/params.yaml evaluate demo/dvc.yaml`).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load, subprocess_env  # noqa: E402  (first: it sets the offline defaults)
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

# Stages downstream of `export` (reviews -> labels): the review database is not a DVC dep, so
# the flow forces the export first; featurize reruns only when the labels changed.
AFTER_EXPORT = ("featurize", "tune", "train", "evaluate")


@task(name="dvc-repro")
def dvc_repro(target: str, project: str, force: bool = False) -> str:
    """`dvc repro <target>` in `project`: upstream stages rerun only when their deps changed."""
    log = get_run_logger()
    cmd = ["dvc", "repro", *(["-f"] if force else []), target]
    log.info("%s (in %s)", " ".join(cmd), project)
    proc = subprocess.run(cmd, cwd=project, env=subprocess_env(), capture_output=True, text=True)
    for line in (proc.stdout + proc.stderr).splitlines():
        log.info("dvc: %s", line)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc repro {target} failed with exit code {proc.returncode}")
    return proc.stdout


@task(name="register")
def register(params: str) -> str:
    from callqa.mlops import registry

    version = registry.register(load(params))
    get_run_logger().info("registered version %s", version)
    return version


@task(name="promote")
def promote(params: str, version: str) -> dict:
    from callqa.mlops import registry

    decision = dataclasses.asdict(registry.promote(load(params), version))
    verdict = "promoted" if decision["promoted"] else "refused"
    get_run_logger().info("version %s %s: %s", version, verdict, "; ".join(decision["reasons"]))
    return decision


def _flat(data, prefix: str = "") -> dict:
    if not isinstance(data, dict):
        return {prefix: data}
    out = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def summary_markdown(
    target: str, metrics: dict | None, decision: dict, reviewed: int | None = None
) -> str:
    verdict = "**promoted**" if decision["promoted"] else "**refused**"
    lines = [
        "# callqa retrain",
        "",
        f"`dvc repro {target}`; candidate version {decision['candidate']}: {verdict} "
        f"(production was {decision['production'] or 'none'})",
        "",
        *([] if reviewed is None else [f"Reviewed calls in the labels: {reviewed}", ""]),
        *[f"- {r}" for r in decision["reasons"]],
        "",
        "## Gate metrics",
        "",
        "| metric | candidate | production |",
        "|---|---|---|",
        *[
            f"| {k} | {v} | {decision['production_metrics'].get(k, '-')} |"
            for k, v in decision["candidate_metrics"].items()
        ],
        "",
        "## Evaluation (`evaluate.metrics_out`)",
        "",
    ]
    if metrics is None:
        lines.append("_no metrics file_")
    else:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in _flat(metrics).items()]
    return "\n".join(lines) + "\n"


def _rows(parquet: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(parquet).metadata.num_rows


def _project(params: Path) -> Path:
    """The DVC project holding `params` (the folder with `.dvc/`; demo/params.yaml -> root)."""
    for folder in (params.parent, *params.parent.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return params.parent


@flow(name="retrain", log_prints=True)
def retrain(
    params: str = "params.yaml", target: str = "evaluate", pipeline: str = "dvc.yaml"
) -> dict:
    """dvc repro `target` of `pipeline` -> register -> promote (gate of registry.gate).

    The demo: `retrain("demo/params.yaml", pipeline="demo/dvc.yaml")`.
    """
    params_path = Path(params).resolve()
    params = str(params_path)
    p = load(params)
    project = str(_project(params_path))
    opts = {"retries": p.flows.retries, "retry_delay_seconds": p.flows.retry_delay_s}
    prefix = "" if pipeline == "dvc.yaml" else f"{pipeline}:"
    if target in AFTER_EXPORT:
        export = dvc_repro.with_options(**opts, task_run_name="dvc-repro-export")
        export(f"{prefix}export", project, True)
    dvc_repro.with_options(**opts)(f"{prefix}{target}", project)
    version = register.with_options(**opts)(params)
    decision = promote.with_options(**opts)(params, version)
    metrics_path = Path(project) / p.evaluate.metrics_out
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    labels = Path(project) / p.review.labels_out
    reviewed = _rows(labels) if target in AFTER_EXPORT and labels.is_file() else None
    create_markdown_artifact(
        markdown=summary_markdown(target, metrics, decision, reviewed),
        key="callqa-retrain",
        description=f"retrain: version {version} "
        + ("promoted" if decision["promoted"] else "refused"),
    )
    return decision


if __name__ == "__main__":
    retrain(*sys.argv[1:4])
