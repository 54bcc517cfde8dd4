"""`callqa inbox`: one exactly-once pass over `flows.inbox_dir` (what the score_inbox flow runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from callqa.cli_common import ParamsOpt, _params, _print_summary, app


def scorer_factory(p, model_uri: str):
    """A no-argument callable building the Scorer: `local` = params.yaml's own Scorer, else the
    registry model at `model_uri` (e.g. models:/callqa-scorer@production)."""

    def local():
        from callqa.pipeline import Scorer

        return Scorer(p.preprocess, p.transcribe, p.score, p.validate_cfg)

    def registry():
        from callqa.mlops.registry import RegistrySource

        source = RegistrySource(p, model_uri)
        version = source.current_version()
        if version is None:
            raise LookupError(f"{model_uri}: no such model version (run `callqa promote`)")
        return source.load(version).scorer

    return local if model_uri == "local" else registry


def review_sink(p):
    """The review database's `on_result` for inbox results, or None (review disabled or the
    database unavailable: scoring goes on, with a warning)."""
    if not p.review.enabled:
        return None
    from callqa.cli_review import review_store
    from callqa.review.sinks import file_recorder

    store = review_store(p, required=False)
    return file_recorder(store, "inbox") if store is not None else None


@app.command()
def inbox(
    model: Annotated[
        str | None,
        typer.Option(
            help="MLflow model URI (default flows.model_uri), or 'local' for "
            "params.yaml's own Scorer."
        ),  # fmt: skip
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Score every new file in flows.inbox_dir once: results + reports to flows.results_dir,
    the file to flows.done_dir (or flows.quarantine_dir with its reason)."""
    p = _params(params)
    from callqa.mlops.inbox import run_inbox

    summary = run_inbox(p.flows, scorer_factory(p, model or p.flows.model_uri), review_sink(p))
    _print_summary("inbox", summary)
    if summary["failed"]:
        raise typer.Exit(1)
