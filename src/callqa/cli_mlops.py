"""`callqa register | promote | rollback | serve`: the registry and the server (on `cli.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from callqa.cli_common import ParamsOpt, _fail, _params, _print_summary, app, console
from callqa.config import ConfigError


@app.command()
def register(
    model: Annotated[
        Path | None, typer.Option(help="Trained model folder to ship (default registry.model_dir).")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Log the whole scoring pipeline as one MLflow pyfunc and register a new version."""
    p = _params(params)
    from callqa.mlops import registry

    if model is not None and not (model / "model.safetensors").is_file():
        raise _fail(f"{model}: not a trained model folder (no model.safetensors)", 2)
    try:
        version = registry.register(p, model)
    except ConfigError as err:  # the model folder does not load
        raise _fail(str(err), 2) from None
    shipped = model or p.registry.model_dir
    has_model = shipped is not None and (Path(shipped) / "model.safetensors").is_file()
    _print_summary("register", {
        "name": p.registry.name, "version": version,
        "model": str(shipped) if has_model else "none: rules only",
        "next": f"callqa promote --version {version}",
    })  # fmt: skip


@app.command()
def promote(
    version: Annotated[
        str | None, typer.Option(help="Candidate version (default: latest).")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Promote a version to Production when it passes the gate (params.yaml registry.gate)."""
    p = _params(params)
    from callqa.mlops import registry

    review_url = None
    if p.registry.gate.review_agreement:  # the gate also scores the reviewed calls
        from callqa.cli_review import review_store

        review_url = review_store(p).url  # opened here: a bad URL fails before any scoring
    try:
        d = registry.promote(p, version, review_url)
    except LookupError as err:  # not registered, or a version that does not load
        raise _fail(str(err), 2) from None
    if d.unchanged:
        console.print(f"promote {p.registry.name}: version {d.candidate} is already production")
        return
    verdict = "[green]promoted[/green]" if d.promoted else "[yellow]refused[/yellow]"
    console.print(f"promote {p.registry.name} version {d.candidate}: {verdict} "
                  f"(production was {d.production or 'none'})")  # fmt: skip
    for reason in d.reasons:
        console.print(f"  - {reason}")
    rows = {k: f"{v} (production {d.production_metrics.get(k)})"
            for k, v in d.candidate_metrics.items()}  # fmt: skip
    if rows:
        _print_summary("candidate metrics", rows)
    if not d.promoted:
        raise typer.Exit(3)


@app.command()
def rollback(params: ParamsOpt = Path("params.yaml")) -> None:
    """Give Production back to the version the current production version replaced."""
    p = _params(params)
    from callqa.mlops import registry

    try:
        old, new = registry.rollback(p)
    except LookupError as err:
        raise _fail(str(err), 2) from None
    console.print(f"rollback {p.registry.name}: production {old} -> {new}")


@app.command()
def serve(
    model_uri: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="models:/NAME@alias (followed), another MLflow model URI, "
            "or 'local' for params.yaml's own Scorer.",
        ),  # fmt: skip
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default serve.port).")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Serve POST /v1/score (audio in, QA result out), /healthz, /readyz, /metrics and the
    review app under /review/ (log in with a user from `callqa review add-user`)."""
    p = _params(params)
    from callqa.cli_common import _override
    from callqa.mlops import serve as server

    cfg = _override(p.serve, {"host": host, "port": port, "model_uri": model_uri})
    if cfg.model_uri == "local":
        source = server.LocalSource(p)
    else:
        from callqa.mlops.registry import RegistrySource, check_model_uri

        try:
            check_model_uri(cfg.model_uri)
            source = RegistrySource(p, cfg.model_uri)
            source.check_exists()
        except ConfigError as err:
            raise _fail(str(err), 2) from None
    extras: dict = {}
    if p.review.enabled:  # the review pages under /review; scored uploads go to its database
        from callqa.cli_review import review_store
        from callqa.review.sinks import api_recorder, api_token
        from callqa.review.web import review_router

        store = review_store(p)
        extras = {
            "routers": [review_router(store, p.review, p.preprocess.channel_roles)],
            "on_scored": api_recorder(store, p.review),
            "api_token": api_token(p.review),
        }
    try:
        sock = server.listen(cfg.host, cfg.port)
    except OSError as err:
        raise _fail(str(err), 3) from None
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host  # an IPv6 address in a URL
    console.print(f"callqa serve: {cfg.model_uri} on http://{host}:{cfg.port} "
                  "(POST /v1/score; GET /healthz /readyz /metrics"
                  + (", /review/" if extras else "") + ")")  # fmt: skip
    server.run(server.create_app(source, cfg, **extras), sock)
