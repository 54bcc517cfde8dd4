"""`callqa`: one command per pipeline stage, plus `score` for new calls.

Each command loads params.yaml (the stage's section), lets options override it for this run,
calls the stage's `run()` and prints its summary. Heavy libraries are imported inside commands,
so `callqa --help` answers quickly.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from callqa.cli_common import (
    ParamsOpt,
    ProgressOpt,
    _fail,
    _override,
    _params,
    _print_summary,
    app,
    cache_app,
    console,
    models_app,
)

# Offline and private by default: models come from installed packages and no library phones
# home. Each is only a default; e.g. HF_HUB_OFFLINE=0 lets a hub id download.
OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # our own progress bars say what is going on
}


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """callqa: check every call for greeting, verification, disclosure, closing, forbidden
    language, dead air, overtalk and speech rate, with evidence a reviewer can jump to."""
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
    )
    logging.getLogger("callqa").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # two INFO lines per track
    for var, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(var, value)


@app.command()
def synth(
    n_calls: Annotated[int | None, typer.Option("-n", "--n-calls", help="How many calls.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
    seed: Annotated[int | None, typer.Option(help="Corpus seed.")] = None,
    mono: Annotated[
        bool, typer.Option("--mono", help="Mix both parties into one channel.")
    ] = False,
    telephone: Annotated[bool, typer.Option(help="8 kHz telephone band, mu-law.")] = False,
    snr_db: Annotated[float | None, typer.Option("--snr-db", help="Background noise SNR.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    phrase_bank: Annotated[
        str | None, typer.Option(help="train | dev | test | test2 | test3")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """Render labelled synthetic two-party calls (wav + JSON ground truth)."""
    all_params = _params(params)
    cfg = all_params.synth
    from callqa.data import synth as stage

    overrides = {
        "seed": seed,
        "channels": "mono" if mono else None,
        "telephone": telephone or None,
        "snr_db": snr_db,
        "workers": workers,
        "phrase_bank": phrase_bank,
    }
    cfg = _override(cfg, overrides)
    summary = stage.run(
        cfg, all_params.preprocess.vad, out_dir=out, n_calls=n_calls, progress=progress
    )
    _print_summary("synth", summary)


@app.command()
def ingest(
    source: Annotated[
        list[Path] | None, typer.Option("--source", "-s", help="Audio folder (repeatable).")
    ] = None,
    labels_csv: Annotated[Path | None, typer.Option(help="CSV: path,label[,speaker].")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Manifest Parquet to write.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """Build the manifest (one row per audio file) from folders, CSV labels or corpora."""
    cfg = _params(params).ingest
    from callqa.data import ingest as stage

    try:
        summary = stage.run(
            cfg, sources=source or None, labels_csv=labels_csv, manifest=manifest, progress=progress
        )
    except stage.IngestError as err:
        raise _fail(str(err), 2) from None
    _print_summary("ingest", summary)


@app.command()
def validate(
    manifest: Annotated[Path | None, typer.Option(help="Manifest to check.")] = None,
    accepted: Annotated[Path | None, typer.Option(help="Accepted rows (Parquet).")] = None,
    quarantine: Annotated[Path | None, typer.Option(help="Quarantined rows (Parquet).")] = None,
    data_docs_dir: Annotated[
        Path | None, typer.Option(help="Great Expectations Data Docs.")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """Great Expectations suite + audio checks: every file accepted or quarantined."""
    p = _params(params)
    cfg = p.validate_cfg
    from callqa.data import validate as stage

    try:
        summary = stage.run(
            cfg,
            manifest=manifest,
            accepted=accepted,
            quarantine=quarantine,
            data_docs_dir=data_docs_dir,
            progress=progress,
            vad=p.preprocess.vad,
        )
    except stage.ValidationFailed as err:
        raise _fail(str(err)) from None
    except (FileNotFoundError, ValueError) as err:  # no manifest, a folder it must not replace
        raise _fail(str(err), 2) from None
    _print_summary("validate", summary)


@app.command()
def preprocess(
    accepted: Annotated[Path | None, typer.Option(help="Accepted rows (Parquet).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """Split roles, resample to 16 kHz, condition, VAD and log-mel per accepted call."""
    cfg = _params(params).preprocess
    from callqa.audio import preprocess as stage

    try:
        summary = stage.run(cfg, accepted=accepted, out_dir=out, progress=progress)
    except (FileNotFoundError, ValueError) as err:  # no accepted table, or a malformed one
        raise _fail(str(err), 2) from None
    _print_summary("preprocess", summary)
    if summary.get("failed"):
        raise _fail(f"{summary['failed']} file(s) failed; see the log above")


@app.command()
def transcribe(
    preprocessed: Annotated[Path | None, typer.Option(help="Preprocessed folder.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Transcript folder.")] = None,
    backend: Annotated[str | None, typer.Option(help="faster-whisper | transformers")] = None,
    model: Annotated[str | None, typer.Option(help="Model path, name or hub id.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """Speech recognition with word timestamps per role (cached per audio, model, options)."""
    p = _params(params)
    from callqa.asr import transcribe as stage
    from callqa.config import ConfigError
    from callqa.qa.scorecard import load_with_encoder

    cfg = _override(p.transcribe, {"backend": backend, "model": model})
    try:
        # The examples of the scorecard's agent_marker checks pick the agent on mono calls.
        card, encoder = load_with_encoder(p.score.scorecard, p.score.sentence_encoder)
        summary = stage.run(
            cfg, card.agent_likeness(encoder), preprocessed_dir=preprocessed, out_dir=out,
            progress=progress,
        )  # fmt: skip
    except (ConfigError, FileNotFoundError) as err:  # a bad setting; no preprocessed calls
        raise _fail(str(err), 2) from None
    _print_summary("transcribe", summary)
    if summary.get("failed"):
        raise _fail(f"{summary['failed']} call(s) failed; see the log above")


@app.command()
def score(
    audio: Annotated[list[Path], typer.Argument(help="Audio files or folders to score.")],
    out: Annotated[Path | None, typer.Option("--out", help="Results JSONL.")] = None,
    report_dir: Annotated[
        Path | None,
        typer.Option(help="HTML report per call and an index (default: score.report_dir)."),
    ] = None,
    reports: Annotated[
        bool, typer.Option("--reports/--no-reports", help="Write the HTML reports.")
    ] = True,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Keep the lines in --out and skip the inputs they cover."),
    ] = False,
    backend: Annotated[str | None, typer.Option(help="faster-whisper | transformers")] = None,
    model: Annotated[str | None, typer.Option(help="ASR model path, name or hub id.")] = None,
    scorecard: Annotated[Path | None, typer.Option(help="Scorecard YAML.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    progress: ProgressOpt = True,
) -> None:
    """Score calls: transcript, metrics, scorecard checks with evidence -> JSON lines."""
    p = _params(params)
    from callqa.pipeline import Scorer, expand_inputs

    tr = _override(p.transcribe, {"backend": backend, "model": model})
    sc = _override(p.score, {"scorecard": scorecard})
    from callqa.config import ConfigError

    paths = expand_inputs(audio)
    if not paths:
        raise _fail("no audio files found in the given paths", 2)
    out = out or sc.out
    if out.is_dir():
        raise _fail(f"--out {out} is a folder; give the path of a .jsonl file", 2)
    report_dir = (report_dir or sc.report_dir) if reports else None
    if report_dir is not None and report_dir.exists() and not report_dir.is_dir():
        raise _fail(f"--report-dir {report_dir} is a file; give a folder (or --no-reports)", 2)
    try:
        scorer = Scorer(p.preprocess, tr, sc, p.validate_cfg)
    except ConfigError as err:
        raise _fail(str(err), 2) from None
    on_result = None
    if p.review.enabled:  # every new result also goes to the review database
        from callqa.cli_review import review_store
        from callqa.review.sinks import file_recorder

        store = review_store(p, required=False)
        on_result = file_recorder(store, "score") if store is not None else None
    try:
        summary = scorer.score_files(
            paths, out, report_dir=report_dir, progress=progress, resume=resume,
            on_result=on_result,
        )  # fmt: skip
    except ConfigError as err:  # --resume into a file that is not a results file
        raise _fail(str(err), 2) from None
    _print_summary("score", summary)
    if summary["failed"]:
        raise typer.Exit(1)


@app.command()
def schema(
    out: Annotated[Path, typer.Option("--out", help="Where to write it.")] = Path(
        "docs/qa_result.schema.json"
    ),
) -> None:
    """Write the JSON Schema of a `callqa score` output line."""
    from callqa.files import atomic_path
    from callqa.schemas import json_schema_text

    with atomic_path(out) as tmp:
        tmp.write_text(json_schema_text(), encoding="utf-8")
    console.print(f"wrote {out}")


@models_app.command("convert-whisper")
def convert_whisper(
    src: Annotated[
        Path | None, typer.Option(help="CTranslate2 Whisper folder (default: bundled tiny.en).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="transformers checkpoint folder.")
    ] = None,
) -> None:
    """Convert the bundled CTranslate2 Whisper into a transformers checkpoint (offline)."""
    from callqa.asr import convert

    src = src or convert.bundled_ct2_dir()
    out = out or convert.DEFAULT_HF_DIR
    try:
        path = convert.convert_whisper(src, out)
    except (convert.ConversionError, FileNotFoundError) as err:
        raise _fail(str(err), 2) from None
    console.print(f"wrote transformers checkpoint to {path}")


@cache_app.command("info")
def cache_info() -> None:
    """Entries, size and folder of each stage's cache ($CALLQA_CACHE_DIR, default .cache/callqa)."""
    from rich.console import Console
    from rich.table import Table

    from callqa.cache import STAGES, stage_info

    table = Table(title="cache", title_justify="left")
    for column in ("stage", "entries", "size", "path"):
        table.add_column(column, justify="right" if column in ("entries", "size") else "left")
    for stage in STAGES:
        info = stage_info(stage)
        size, unit = float(info["size_bytes"]), "B"
        for unit in ("B", "kB", "MB", "GB", "TB"):
            if size < 1000 or unit == "TB":
                break
            size /= 1000
        table.add_row(stage, str(info["entries"]), f"{size:.1f} {unit}", info["path"])
    Console().print(table)


@cache_app.command("clear")
def cache_clear(
    stage: Annotated[str | None, typer.Argument(help="One stage's cache (default: all).")] = None,
) -> None:
    """Delete the cache of every stage, or of one (preprocess outs stay readable)."""
    from callqa.cache import STAGES, clear

    if stage is not None and stage not in STAGES:
        raise _fail(f"unknown cache stage {stage!r}; known: {', '.join(STAGES)}", 2)
    removed = clear([stage] if stage else STAGES)
    console.print(", ".join(f"{k}: {v} entries removed" for k, v in removed.items()))


from callqa import cli_flows, cli_mlops, cli_model, cli_review  # noqa: E402, F401 - register commands

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
