"""`callqa validate`: manifest.parquet -> accepted.parquet + quarantine.parquet + Data Docs.

Two layers: a Great Expectations suite guards the manifest (ids, header facts, labels, unique
content) and writes Data Docs; per-file checks (`audio_checks.py`) decode each file in blocks and
catch what a header cannot show (NaN samples, silence, clipping, no speech). Both feed one list of
reason codes per file.

Example:
    >>> from callqa.config import ValidateConfig
    >>> summary = run(ValidateConfig(), progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from callqa.audio.io import AudioError, probe
from callqa.cache import StageCache
from callqa.config import VadConfig, ValidateConfig
from callqa.data.audio_checks import AudioStats, cached_measure, file_reasons, stats_cache
from callqa.files import atomic_path, content_id

logger = logging.getLogger(__name__)

# Quarantine codes in CONTRACTS.md order; a file's reasons are always listed in this order.
CODES = [
    "missing_file", "empty_file", "not_audio", "unreadable", "content_changed", "too_short",
    "too_long",
    "too_many_channels", "sample_rate_too_low", "nan_samples", "silent", "clipped", "no_speech",
    "unknown_label", "label_out_of_scope", "duplicate_content",
]  # fmt: skip
FILE_CODES = ("missing_file", "empty_file", "not_audio", "unreadable")
SUITE_NAME = "callqa_manifest"
SITE_NAME = "callqa_docs"
DOCS_MARKER = ".callqa-data-docs"  # written into every Data Docs folder callqa builds


class ValidationFailed(Exception):
    """Too few files passed validation (outputs are written before this is raised)."""


def check_docs_dir(docs_dir: Path) -> None:
    """Refuse to replace a folder callqa did not build (Data Docs are rebuilt from scratch).

    Raises:
        ValueError: `docs_dir` is a file, or a non-empty folder without callqa's marker.
    """
    if not docs_dir.exists():
        return
    if not docs_dir.is_dir():
        raise ValueError(f"validate.data_docs_dir '{docs_dir}' is a file, not a folder")
    if (docs_dir / DOCS_MARKER).is_file() or not any(docs_dir.iterdir()):
        return
    raise ValueError(
        f"validate.data_docs_dir '{docs_dir}' holds files callqa did not write, and the Data "
        "Docs would replace them; choose an empty or new folder (--data-docs-dir)"
    )


# ---------------------------------------------------------------- per-file reasons


def label_reasons(row: dict, cfg: ValidateConfig) -> dict[str, str]:
    """Reason code -> sentence for the label of one manifest row."""
    status, raw, label = row.get("label_status"), row.get("label_raw"), row.get("label")
    if status == "unknown":
        return {"unknown_label": f"has label '{raw}', which ingest.label_map does not know; "
                "add it to ingest.label_map (map it to null to exclude it)"}  # fmt: skip
    if status == "out_of_scope":
        return {"label_out_of_scope": f"has label '{raw}', which ingest.label_map maps to "
                "nothing (out of scope for the emotion model)"}  # fmt: skip
    if label is not None and label not in cfg.labels:
        return {"label_out_of_scope": f"has label '{label}', not in validate.labels "
                f"({', '.join(cfg.labels)})"}  # fmt: skip
    return {}


def _is_null(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# ---------------------------------------------------------------- Great Expectations


def build_suite(cfg: ValidateConfig):
    """The manifest expectations (GX 1.x classes)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx.ExpectationSuite(
        name=SUITE_NAME,
        expectations=[
            gxe.ExpectColumnValuesToNotBeNull(column="id"),
            gxe.ExpectColumnValuesToNotBeNull(column="duration_s"),
            gxe.ExpectColumnValuesToBeBetween(
                column="duration_s", min_value=cfg.min_duration_s, max_value=cfg.max_duration_s
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="sample_rate_hz", min_value=cfg.min_sample_rate_hz
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="channels", min_value=1, max_value=cfg.max_channels
            ),
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(cfg.labels)),
            gxe.ExpectColumnValuesToBeInSet(column="label_status", value_set=["none", "ok"]),
            gxe.ExpectColumnValuesToBeUnique(column="id"),
        ],
    )


def _gx_codes(kind: str, column: str, value, row: dict, cfg: ValidateConfig) -> list[str]:
    """Reason codes for one row that failed one expectation."""
    if kind == "expect_column_values_to_not_be_null":
        return [row.get("probe_error") or "unreadable"]
    if kind == "expect_column_values_to_be_between" and not _is_null(value):
        if column == "duration_s":
            return ["too_short" if value < cfg.min_duration_s else "too_long"]
        if column == "sample_rate_hz":
            return ["sample_rate_too_low"]
        if column == "channels":
            return ["too_many_channels"]
    if kind == "expect_column_values_to_be_in_set":
        if column == "label_status":
            return ["unknown_label" if value == "unknown" else "label_out_of_scope"]
        return ["label_out_of_scope"]
    return []  # uniqueness is resolved by path order in run(); GX flags every copy


def run_expectations(df, cfg: ValidateConfig, docs_dir: Path) -> tuple[dict[str, set], dict]:
    """Run the suite on the manifest and rebuild Data Docs in `docs_dir`.

    Returns:
        (path -> reason codes from failed expectations, {expectation: success}).
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX sets some of its own loggers to INFO; those lines are internals, not news for a user.
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] == "great_expectations":
            gx_logger = logging.getLogger(name)
            if gx_logger.level < logging.WARNING:
                gx_logger.setLevel(logging.WARNING)
    cols = ["path", "id", "duration_s", "sample_rate_hz", "channels", "label", "label_status"]
    frame = df[cols].copy()
    for c in ("duration_s", "sample_rate_hz", "channels"):
        frame[c] = frame[c].astype("float64")  # nullable ints confuse GX's between-metrics
    for c in ("path", "id", "label", "label_status"):
        frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
    rows = {r["path"]: r for r in df.to_dict("records")}

    docs_dir = Path(docs_dir).resolve()
    docs_dir.parent.mkdir(parents=True, exist_ok=True)
    # Build into a fresh folder beside the target, then swap: old reports never pile up and a
    # failed run leaves the previous docs intact.
    staging = Path(tempfile.mkdtemp(prefix=f".{docs_dir.name}.", dir=docs_dir.parent))
    try:
        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        ctx.add_data_docs_site(
            site_name=SITE_NAME,
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(staging),
                },
            },
        )
        asset = ctx.data_sources.add_pandas("manifest_src").add_dataframe_asset(name="manifest")
        batch = asset.add_batch_definition_whole_dataframe("whole")
        suite = ctx.suites.add(build_suite(cfg))
        vd = ctx.validation_definitions.add(
            gx.ValidationDefinition(name="manifest_validation", data=batch, suite=suite)
        )
        checkpoint = ctx.checkpoints.add(
            gx.Checkpoint(
                name="manifest_checkpoint",
                validation_definitions=[vd],
                # Explicit site_names: without them GX also builds docs into a fresh tmp dir.
                actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[SITE_NAME])],
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": ["path"],
                },
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        (staging / DOCS_MARKER).write_text("Great Expectations Data Docs built by callqa\n")
        check_docs_dir(docs_dir)
        if docs_dir.exists():
            shutil.rmtree(docs_dir)
        staging.rename(docs_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    reasons: dict[str, set] = {}
    outcomes: dict[str, bool] = {}
    for vr in result.run_results.values():
        for r in vr.results:
            kind = r.expectation_config.type
            column = r.expectation_config.kwargs.get("column")
            outcomes[f"{kind.removeprefix('expect_column_values_to_')}({column})"] = bool(r.success)
            for hit in (r.result or {}).get("unexpected_index_list") or []:
                path = hit.get("path")
                row = rows.get(path, {})
                for code in _gx_codes(kind, column, hit.get(column), row, cfg):
                    reasons.setdefault(path, set()).add(code)
    return reasons, outcomes


# ---------------------------------------------------------------- the stage


def _read_manifest(path: Path):
    import pandas as pd

    from callqa.data.ingest import MANIFEST_COLUMNS

    if not path.is_file():
        raise FileNotFoundError(f"manifest '{path}' not found: run `callqa ingest` first")
    df = pd.read_parquet(path)
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"manifest '{path}' lacks column(s) {', '.join(missing)}: it was written by another "
            "version of callqa; run `callqa ingest` again"
        )
    dup = df["path"][df["path"].duplicated()].tolist()
    if dup:
        raise ValueError(f"manifest '{path}' lists {dup[0]} more than once; run `callqa ingest`")
    return df.sort_values("path", kind="stable").reset_index(drop=True)


def _write_outputs(df, accepted_mask, quarantine_rows, accepted: Path, quarantine: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from callqa.data.ingest import MANIFEST_COLUMNS

    schema = pa.schema([(n, getattr(pa, t)()) for n, t in MANIFEST_COLUMNS.items()])
    records = df[accepted_mask].to_dict("records")
    clean = [{c: (None if _is_null(r.get(c)) else r.get(c)) for c in MANIFEST_COLUMNS}
             for r in records]  # fmt: skip
    for r in clean:  # pandas turns nullable ints into floats on read
        for c, t in MANIFEST_COLUMNS.items():
            if t == "int64" and r[c] is not None:
                r[c] = int(r[c])
    q_schema = pa.schema(
        [
            ("path", pa.string()),
            ("id", pa.string()),
            ("reasons", pa.list_(pa.string())),
            ("message", pa.string()),
        ]
    )
    with atomic_path(accepted) as tmp:
        pq.write_table(pa.Table.from_pylist(clean, schema), tmp)
    with atomic_path(quarantine) as tmp:
        pq.write_table(pa.Table.from_pylist(quarantine_rows, q_schema), tmp)


def check_row(
    row: dict,
    cfg: ValidateConfig,
    cache: StageCache | None = None,
    vad: VadConfig = VadConfig(),  # noqa: B008 - frozen
) -> dict[str, str]:
    """Per-file checks of one manifest row: reason code -> sentence (empty when the file is fine).

    The file is probed again rather than trusting the manifest, since it may have changed or
    gone since ingest; a file longer than the limit is judged by its header, not decoded.
    """
    reasons: dict[str, str] = {}
    if row.get("probe_error") in FILE_CODES and row.get("probe_message"):
        reasons[row["probe_error"]] = row["probe_message"]
    try:
        duration_s = row.get("duration_s")
        if duration_s is not None and duration_s > cfg.max_duration_s:
            h = probe(row["path"])
            stats = AudioStats(h["frames"], h["sample_rate_hz"], h["channels"], h["subtype"])
        else:
            probe(row["path"])  # a missing file, a pipe or a device: never hashed
            content = _changed_since_ingest(row, reasons)
            stats = cached_measure(row["path"], cache, vad, content)
        reasons.update(file_reasons(stats, cfg))
    except AudioError as err:
        reasons.setdefault(err.code, err.message)
    reasons.update(label_reasons(row, cfg))
    return reasons


def _changed_since_ingest(row: dict, reasons: dict[str, str]) -> str | None:
    """The file's content id now (None when it cannot be read); `content_changed` when it is
    not the id ingest gave it (the file was edited or replaced after ingest)."""
    try:
        content = content_id(row["path"])
    except OSError:
        return None  # probe / decoding say what is wrong with the file
    if row.get("id") and content != row["id"]:
        reasons["content_changed"] = (
            f"changed after ingest: its content id is now {content}, the manifest says "
            f"{row['id']}; run `callqa ingest` again"
        )
    return content


def run(
    cfg: ValidateConfig,
    manifest: Path | None = None,
    accepted: Path | None = None,
    quarantine: Path | None = None,
    data_docs_dir: Path | None = None,
    progress: bool = True,
    cache_dir: Path | None = None,
    vad: VadConfig = VadConfig(),  # noqa: B008 - frozen
) -> dict:
    """Validate the manifest: every row ends in accepted.parquet or quarantine.parquet.

    Args:
        cfg: the `validate` section; the path arguments override it for this run.
        manifest: manifest Parquet from `callqa ingest`.
        accepted: output Parquet of accepted manifest rows.
        quarantine: output Parquet (`path`, `id`, `reasons`, `message`).
        data_docs_dir: folder for the Great Expectations Data Docs (rebuilt each run).
        progress: show a progress bar over the per-file checks.
        cache_dir: root of the per-file cache of decoded-audio measurements (default
            `callqa.cache.cache_root()`; its `validate/` folder).
        vad: voice-detector settings (params.yaml `preprocess.vad`) for the `no_speech` check.

    Returns:
        Summary: files, accepted, quarantined, by_reason, accepted_share (over files not
        quarantined only as label_out_of_scope), gx_success, data_docs path, output paths.

    Raises:
        ValidationFailed: accepted share below `cfg.min_accepted_share` (after writing outputs).
        FileNotFoundError / ValueError: the manifest is missing or malformed, or the Data Docs
            folder holds files callqa did not write.
    """
    from callqa.progress import track

    manifest = Path(cfg.manifest if manifest is None else manifest)
    accepted = Path(cfg.accepted if accepted is None else accepted)
    quarantine = Path(cfg.quarantine if quarantine is None else quarantine)
    docs_dir = Path(cfg.data_docs_dir if data_docs_dir is None else data_docs_dir)
    check_docs_dir(docs_dir)  # before any work
    df = _read_manifest(manifest)
    records = [{k: (None if _is_null(v) else v) for k, v in r.items()}
               for r in df.to_dict("records")]  # fmt: skip

    gx_reasons, gx_outcomes = run_expectations(df, cfg, docs_dir)
    cache = stats_cache(vad, cache_dir)
    cache.sweep()

    found: list[dict[str, str]] = []
    kept = _kept_copies(records)
    for row in track(records, "validate", enabled=progress):
        reasons = check_row(row, cfg, cache, vad)
        keep = kept.get(row["id"])
        if keep is not None and keep != row["path"]:
            link = " (a symlink to it)" if Path(row["path"]).is_symlink() else ""
            reasons["duplicate_content"] = (
                f"has the same content as {keep}{link}, which is kept; remove one of the copies"
            )
        for code in gx_reasons.get(row["path"], ()):
            reasons.setdefault(code, _gx_message(code, row, cfg))
        found.append(reasons)

    q_rows, accepted_mask, by_reason = [], [], Counter()
    for row, reasons in zip(records, found, strict=True):
        codes = [c for c in CODES if c in reasons]
        accepted_mask.append(not codes)
        if not codes:
            continue
        by_reason.update(codes)
        q_rows.append({"path": row["path"], "id": row["id"], "reasons": codes,
                       "message": _message(row["path"], [reasons[c] for c in codes])})  # fmt: skip
    _write_outputs(df, np.array(accepted_mask, dtype=bool), q_rows, accepted, quarantine)

    n_ok = int(sum(accepted_mask))
    out_only = sum(r["reasons"] == ["label_out_of_scope"] for r in q_rows)
    in_scope = len(records) - out_only
    share = n_ok / in_scope if in_scope else None
    index = docs_dir / "index.html"
    summary = {
        "files": len(records),
        "accepted": n_ok,
        "quarantined": len(q_rows),
        "by_reason": {c: by_reason[c] for c in CODES if by_reason[c]},
        "accepted_share": share,
        "out_of_scope": out_only,
        "gx_success": all(gx_outcomes.values()),
        "gx_failed": [name for name, ok in gx_outcomes.items() if not ok],
        "data_docs": str(index),
        "accepted_path": str(accepted),
        "quarantine_path": str(quarantine),
    }
    logger.debug(
        "validate: %d files, %d accepted, %d quarantined %s; Data Docs %s",
        len(records), n_ok, len(q_rows), summary["by_reason"] or "", index,
    )  # fmt: skip
    if share is None or share < cfg.min_accepted_share:
        top = ", ".join(f"{c} {n}" for c, n in by_reason.most_common(3)) or "none"
        what = (
            f"only {n_ok} of {in_scope} in-scope files ({100 * share:.0f}%) passed"
            if share is not None
            else f"no in-scope files to validate ({len(records)} in the manifest)"
        )
        raise ValidationFailed(
            f"validation failed: {what}, below validate.min_accepted_share "
            f"({100 * cfg.min_accepted_share:.0f}%). Most common reasons: {top}. "
            f"See {quarantine} for each file and {index} for the expectation report."
        )
    return summary


def _kept_copies(records: list[dict]) -> dict[str, str]:
    """Content id -> the path kept among files with that content: the first in path order,
    a real file before a symlink to it. Empty files are not copies of each other."""
    kept: dict[str, str] = {}
    for r in sorted(records, key=lambda r: (Path(r["path"]).is_symlink(), r["path"])):
        if r["id"] and r["size_bytes"]:
            kept.setdefault(r["id"], r["path"])
    return kept


def _message(path: str, parts: list[str]) -> str:
    """One sentence: the file name, then each reason (io messages already start with it)."""
    name = Path(path).name
    clean = []
    for part in parts:
        for prefix in (f"{path}: ", f"{name}: "):
            if part.startswith(prefix):
                part = part[len(prefix) :]
                break
        clean.append(part.rstrip("."))
    return f"{name}: " + "; ".join(clean) + "."


def _gx_message(code: str, row: dict, cfg: ValidateConfig) -> str:
    """Sentence for a reason found only by the manifest suite (header facts)."""
    if code in FILE_CODES:
        return row.get("probe_message") or "could not be read when the manifest was built"
    stats = AudioStats(
        frames=round((row.get("duration_s") or 0) * (row.get("sample_rate_hz") or 0)),
        sample_rate_hz=int(row.get("sample_rate_hz") or 0),
        channels=int(row.get("channels") or 0),
        subtype=row.get("subtype") or "",
    )
    msg = {**file_reasons(stats, cfg), **label_reasons(row, cfg)}.get(code)
    return msg or f"fails the manifest check '{code}'"
