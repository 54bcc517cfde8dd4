"""`callqa review add-user | set-password | import`: reviewer accounts and loading result lines
into the review database (the pages themselves are served by `callqa serve` under /review);
`callqa calibrate`: what the reviews say about the system."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from callqa.cli_common import ParamsOpt, _fail, _params, _print_summary, app, console

review_app = typer.Typer(
    help="Human review: reviewer accounts and the review database.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(review_app, name="review")

DB_URL_ENV = "CALLQA_REVIEW_DB_URL"  # wins over review.db_url (the compose stack sets it)


def review_db_url(p) -> str:
    return os.environ.get(DB_URL_ENV) or p.review.db_url


def review_store(p, required: bool = True):
    """The review store of params `p` at the latest migration; None (with a warning) when it
    cannot be opened and `required` is false, so scoring goes on without it."""
    from callqa.review.sinks import open_store

    url = review_db_url(p)
    try:
        return open_store(p.review, url)
    except Exception as err:  # noqa: BLE001 - a bad URL, a server that is down, a locked file
        where = DB_URL_ENV if os.environ.get(DB_URL_ENV) else "review.db_url"
        message = f"review database ({where}) cannot be opened: {type(err).__name__}: {err}"
        if required:
            raise _fail(message, 2) from None
        console.print(f"[yellow]warning:[/yellow] {message}; results are not stored for review")
        return None


def _password(password: str | None) -> str:
    if password is not None:
        return password
    if env := os.environ.get("CALLQA_REVIEW_PASSWORD"):  # for scripts; not on the command line
        return env
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


@review_app.command("add-user")
def add_user(
    username: Annotated[str, typer.Argument(help="Log-in name.")],
    role: Annotated[str, typer.Option(help="reviewer | admin")] = "reviewer",
    password: Annotated[
        str | None,
        typer.Option(help="Password (default: $CALLQA_REVIEW_PASSWORD, else asked)."),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Create a local reviewer account (argon2-hashed password)."""
    store = review_store(_params(params))
    try:
        store.add_user(username, _password(password), role)
    except ValueError as err:
        raise _fail(str(err), 2) from None
    console.print(f"user {username!r} ({role}) created")


@review_app.command("set-password")
def set_password(
    username: Annotated[str, typer.Argument(help="Log-in name.")],
    password: Annotated[str | None, typer.Option(help="New password (default: asked).")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Give a user a new password."""
    store = review_store(_params(params))
    try:
        store.set_password(username, _password(password))
    except (LookupError, ValueError) as err:
        raise _fail(str(err).strip("'\""), 2) from None
    console.print(f"password of {username!r} changed")


@review_app.command("import")
def import_results(
    results: Annotated[Path, typer.Argument(help="A results.jsonl written by callqa score.")],
    source: Annotated[str, typer.Option(help="What scored them (score, inbox, ...).")] = "score",
    report_dir: Annotated[
        Path | None, typer.Option(help="Folder of their HTML reports (default score.report_dir).")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Load result lines into the review database (calls it holds already are skipped).

    A line that is not a QA result with a 16-hex-digit call_id is skipped with a warning naming
    its line number (exit 1); a result whose path is not an audio file here is stored without
    its recording (the app never serves that path)."""
    import json

    from callqa.review.sinks import audio_problem, record, result_problem

    p = _params(params)
    store = review_store(p)
    report_dir = report_dir or p.score.report_dir
    counts = {"stored": 0, "errors_skipped": 0, "invalid_skipped": 0, "failed": 0}
    try:
        lines = results.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise _fail(f"{results}: {err.strerror}", 2) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            data = None  # not JSON: "not a JSON object" below
        if isinstance(data, dict) and "error" in data:
            counts["errors_skipped"] += 1
            continue
        problem = result_problem(data)
        if problem is not None:  # named by its number: the line itself is never echoed
            console.print(f"[yellow]warning:[/yellow] {results} line {number}: {problem}; skipped")
            counts["invalid_skipped"] += 1
            continue
        audio: Path | None = Path(data["path"])
        if (why := audio_problem(audio)) is not None:  # stored, but nothing is ever served
            console.print(f"[yellow]warning:[/yellow] {results} line {number}: its path is "
                          f"{why}; stored without a player")  # fmt: skip
            audio = None
        report = Path(report_dir) / f"{data['call_id']}.html" if report_dir else None
        ok = record(store, data, source, audio,
                    report if report is not None and report.is_file() else None)  # fmt: skip
        counts["stored" if ok is not None else "failed"] += 1
    _print_summary("review import", counts)
    if counts["invalid_skipped"] or counts["failed"]:
        raise typer.Exit(1)


@review_app.command("export")
def export(
    out: Annotated[
        Path | None, typer.Option(help="Labels Parquet (default: review.labels_out).")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Reviewed calls -> labels (one row per call) for featurize and train."""
    p = _params(params)
    from callqa.qa.scorecard import Scorecard
    from callqa.review.export import run

    scorecard = Scorecard.load(p.score.scorecard)
    store = review_store(p) if _db_exists(review_db_url(p)) else None
    _print_summary("review export", run(store, scorecard, out or p.review.labels_out))


def _db_exists(url: str) -> bool:
    """A SQLite file that is not there yet means no reviews (nothing is created for it)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return not u.drivername.startswith("sqlite") or bool(u.database and Path(u.database).exists())


@app.command()
def calibrate(
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default review.calibration_out).")
    ] = None,
    model_version: Annotated[
        str | None, typer.Option(help="Only reviews of this model version (default: all).")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Agreement of each check with reviewers (precision, recall, F1 with 95% intervals; the
    random share is the unbiased one) and thresholds proposed for model checks: an HTML
    report + JSON, logged to MLflow."""
    p = _params(params)
    store = review_store(p)
    from callqa.review import calibrate as calibration

    _print_summary("calibrate", calibration.run(p, store, out, model_version))
