"""`callqa ingest`: audio folders (+ optional labels CSV) -> manifest.parquet.

One row per input file, broken ones included: `callqa validate` decides what is kept, so a
file that cannot be read still gets a row with a `probe_error` code.

Example:
    >>> from callqa.config import IngestConfig
    >>> cfg = IngestConfig()
    >>> summary = run(cfg, sources=[Path("data/synth")], progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from callqa.audio.io import (
    SCAN_EXTENSIONS,
    AudioError,
    not_regular_error,
    probe,
    scan_folder,
    unreadable_error,
)
from callqa.config import IngestConfig, SplitConfig
from callqa.data.labels import assign_splits, map_label, parse_corpus_name
from callqa.files import atomic_path, content_id

logger = logging.getLogger(__name__)


SOURCES = ("synth", "csv", "ravdess", "cremad", "folder")

# Manifest columns and their Arrow types; validate reads the same list.
MANIFEST_COLUMNS: dict[str, str] = {
    "id": "string",  # first 16 hex of SHA-256 of the bytes; null if the file cannot be read
    "path": "string",
    "size_bytes": "int64",
    "duration_s": "float64",
    "sample_rate_hz": "int64",
    "channels": "int64",
    "format": "string",
    "subtype": "string",  # soundfile subtype: PCM_16, ULAW, ... (quantisation step for clipping)
    "probe_error": "string",  # missing_file | empty_file | not_audio | unreadable | null
    "probe_message": "string",
    "label_raw": "string",
    "label": "string",
    "label_status": "string",  # none | ok | out_of_scope | unknown
    "labels_json": "string",
    "speaker": "string",
    "source": "string",
    "split": "string",
}
LABEL_STATUSES = ("none", "ok", "out_of_scope", "unknown")


class IngestError(ValueError):
    """An input problem the user can fix (missing folder, bad labels CSV)."""


@dataclass
class Entry:
    """One input file before probing."""

    path: str
    source: str
    label_raw: str | None = None
    speaker: str | None = None
    labels_json: str | None = None


def _read_sidecar(path: Path) -> dict | None:
    """A synth sidecar (`<stem>.json` with `checks` and `emotion`), or None."""
    side = path.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        logger.warning(
            "%s: sidecar is not valid JSON (%s); the file is ingested unlabelled", side, err
        )
        return None
    if isinstance(data, dict) and "checks" in data and "emotion" in data:
        return data
    return None


def classify_file(path: Path, path_str: str) -> Entry:
    """Decide source, label and speaker of one file found in a folder."""
    sidecar = _read_sidecar(path)
    if sidecar is not None:
        emotion = sidecar.get("emotion") or {}
        return Entry(
            path=path_str,
            source="synth",
            label_raw=emotion.get("customer") if isinstance(emotion, dict) else None,
            labels_json=json.dumps(sidecar, sort_keys=True, ensure_ascii=False),
        )
    parsed = parse_corpus_name(path.stem)
    if parsed is not None:
        source, label_raw, speaker, extras = parsed
        return Entry(path_str, source, label_raw, speaker, json.dumps(extras, sort_keys=True))
    return Entry(path=path_str, source="folder")


def scan_source(source: Path) -> list[Entry]:
    """Every file under `source` (a folder, walked recursively, or one file).

    Audio files are classified (synth, corpus, plain folder). Files with another extension are
    listed too, so validate quarantines them with a reason (`not_audio`, or `unreadable` for a
    container it cannot decode) instead of dropping them without a word; only companions of a
    recording (a sidecar `<stem>.json` beside `<stem>.wav`) and hidden files are left out.

    Raises:
        IngestError: when `source` does not exist.
    """
    if not source.exists():
        raise IngestError(
            f"ingest source '{source}' does not exist: fix ingest.sources in params.yaml or "
            "pass existing folders (run `callqa synth` first for data/synth)"
        )
    if source.is_file():
        return [classify_file(source, os.path.normpath(str(source)))]
    scan = scan_folder(source)
    entries = [classify_file(f, os.path.normpath(str(f))) for f in scan.audio]
    entries += [Entry(path=os.path.normpath(str(f)), source="folder") for f in scan.other]
    if scan.hidden:
        logger.info("%s: skipped %d hidden files or folders", source, scan.hidden)
    if scan.other:
        logger.info(
            "%s: %d file(s) without an audio extension are listed for validate to quarantine",
            source, len(scan.other),
        )  # fmt: skip
    return entries


def read_labels_csv(csv_path: Path) -> list[Entry]:
    """Rows of a labels CSV (`path,label[,speaker]`; paths relative to the CSV's folder).

    A file named in the CSV that does not exist is still returned: validate quarantines it as
    `missing_file`, so the user sees it in the report instead of a silent drop.

    Raises:
        IngestError: when the CSV is missing or lacks the `path` / `label` columns.
    """
    if not csv_path.is_file():
        raise IngestError(f"labels CSV '{csv_path}' not found: fix ingest.labels_csv or --labels")
    # utf-8-sig: spreadsheets often save a byte-order mark that would corrupt the first header.
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise IngestError(f"labels CSV '{csv_path}': not a text CSV file (not UTF-8)") from None
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        missing = [c for c in ("path", "label") if c not in header]
        if missing:
            raise IngestError(
                f"labels CSV '{csv_path}': missing column(s) {', '.join(missing)} "
                f"(found: {', '.join(header) or 'no header'}). Expected a header row "
                "'path,label' with an optional 'speaker' column."
            )
        rows = [
            {(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader
        ]
    entries: dict[str, Entry] = {}
    for line_no, row in enumerate(rows, start=2):
        rel = row.get("path", "")
        if not rel:
            logger.warning("%s line %d: empty path, row skipped", csv_path, line_no)
            continue
        full = Path(rel) if Path(rel).is_absolute() else csv_path.parent / rel
        path_str = os.path.normpath(str(full))
        speaker = row.get("speaker") or None
        parsed = parse_corpus_name(full.stem)
        if speaker is None and parsed is not None:
            speaker = parsed[2]  # corpus file names still tell who speaks
        entry = Entry(path_str, "csv", row.get("label") or None, speaker)
        key = os.path.realpath(path_str)
        if key in entries:
            if entries[key].label_raw != entry.label_raw:
                logger.warning(
                    "%s line %d: %s is listed again with label %r; keeping the first, %r",
                    csv_path, line_no, rel, entry.label_raw, entries[key].label_raw,
                )  # fmt: skip
            continue
        entries[key] = entry
    return list(entries.values())


def describe_file(path: str) -> dict:
    """Hash and header facts of one file; never raises for a bad file."""
    row: dict = {"id": None, "size_bytes": None, "duration_s": None, "sample_rate_hz": None,
                 "channels": None, "format": None, "subtype": None,
                 "probe_error": None, "probe_message": None}  # fmt: skip
    p = Path(path)
    try:
        st = p.stat()  # follows links: `x.wav -> /dev/urandom` is a device
        if (err := not_regular_error(p, st)) is not None:  # reading it may never end
            row["probe_error"], row["probe_message"] = err.code, err.message
            return row
        row["size_bytes"] = st.st_size
        row["id"] = content_id(p)
    except FileNotFoundError:
        row["size_bytes"] = None
    except OSError as err:
        err = unreadable_error(p, err)
        row["probe_error"], row["probe_message"] = err.code, err.message
        return row
    try:
        info = probe(p)
    except AudioError as err:
        row["probe_error"], row["probe_message"] = err.code, err.message
        return row
    row.update({k: info[k] for k in ("duration_s", "sample_rate_hz", "channels", "format",
                                     "subtype")})  # fmt: skip
    return row


def build_manifest(
    entries: list[Entry], label_map: dict[str, str | None], split: SplitConfig, progress: bool
) -> list[dict]:
    """Probe every entry, map labels and assign speaker-disjoint splits (rows sorted by path)."""
    from callqa.progress import track

    rows = []
    entries = sorted(entries, key=lambda e: e.path)
    for e in track(entries, "ingest", enabled=progress):
        label, status = map_label(e.label_raw, label_map)
        facts = describe_file(e.path)
        if facts["probe_error"] == "missing_file" and e.source == "csv":
            facts["probe_message"] = (
                f"{e.path}: file not found, but the labels CSV lists it; fix the path in the "
                "CSV (relative to the CSV's folder) or remove the row"
            )
        rows.append({**facts, "path": e.path, "label_raw": e.label_raw,
                     "label": label, "label_status": status, "labels_json": e.labels_json,
                     "speaker": e.speaker, "source": e.source})  # fmt: skip
    # Files of one speaker stay together; unknown speakers are single-file groups (by content,
    # so two copies of one recording cannot land on both sides of the split).
    groups = [
        f"speaker:{r['speaker']}" if r["speaker"] else f"file:{r['id'] or r['path']}" for r in rows
    ]
    splits = assign_splits(dict(Counter(groups)), split)
    for r, g in zip(rows, groups, strict=True):
        r["split"] = splits[g]
    return rows


def write_manifest(rows: list[dict], path: Path) -> None:
    """Write rows as Parquet with the fixed manifest schema (temp name, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, getattr(pa, typ)()) for name, typ in MANIFEST_COLUMNS.items()])
    table = pa.Table.from_pylist([{c: r.get(c) for c in MANIFEST_COLUMNS} for r in rows], schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def collect_entries(sources: list[Path], labels_csv: Path | None) -> list[Entry]:
    """Folder scans plus CSV rows; a path found twice appears once, the CSV's labels winning.

    Paths are compared as written (normalised), not through symlinks: a symlink to a file
    already listed stays a row of its own, which validate quarantines as `duplicate_content`.
    A CSV row is matched to a scanned file by path, else by the file it resolves to.
    """
    csv_real = os.path.realpath(labels_csv) if labels_csv is not None else None
    by_path: dict[str, Entry] = {}
    for src in sources:
        for e in scan_source(Path(src)):
            if os.path.realpath(e.path) != csv_real:  # the labels CSV is not an input
                by_path.setdefault(e.path, e)
    if labels_csv is not None:
        by_real: dict[str, str] = {}
        for path in by_path:
            by_real.setdefault(os.path.realpath(path), path)
        for e in read_labels_csv(Path(labels_csv)):
            key = e.path if e.path in by_path else by_real.get(os.path.realpath(e.path), e.path)
            found = by_path.get(key)
            if found is not None:
                e.path = found.path  # keep one spelling of the path
                e.speaker = e.speaker or found.speaker
                e.labels_json = found.labels_json
            by_path[key] = e
    return list(by_path.values())


def run(
    cfg: IngestConfig,
    sources: list[Path] | None = None,
    labels_csv: Path | None = None,
    manifest: Path | None = None,
    progress: bool = True,
) -> dict:
    """Build the manifest from audio folders and an optional labels CSV.

    Args:
        cfg: the `ingest` section; `sources`, `labels_csv`, `manifest` override it for this run.
        sources: folders (or single files) to scan recursively.
        labels_csv: CSV with `path,label[,speaker]`, paths relative to the CSV's folder.
        manifest: output Parquet path.
        progress: show a progress bar.

    Returns:
        Summary: manifest path, file count, counts by source, split, label status and probe
        error, and the number of known speakers.

    Raises:
        IngestError: a source folder or the labels CSV is missing or malformed, or no input
            file was found.
    """
    sources = list(cfg.sources if sources is None else sources)
    labels_csv = cfg.labels_csv if labels_csv is None else labels_csv
    manifest = Path(cfg.manifest if manifest is None else manifest)
    if manifest.is_dir():
        raise IngestError(f"--manifest {manifest} is a folder; give the path of a .parquet file")
    entries = collect_entries(sources, labels_csv)
    if not entries:
        where = ", ".join(str(s) for s in sources) or "(no sources)"
        raise IngestError(
            f"no audio files found in {where}: check ingest.sources (extensions read: "
            f"{', '.join(sorted(SCAN_EXTENSIONS))})"
        )
    rows = build_manifest(entries, cfg.label_map, cfg.split, progress)
    write_manifest(rows, manifest)
    summary = {
        "manifest": str(manifest),
        "files": len(rows),
        "by_source": dict(Counter(r["source"] for r in rows)),
        "by_split": dict(Counter(r["split"] for r in rows)),
        "by_label_status": dict(Counter(r["label_status"] for r in rows)),
        "probe_errors": dict(Counter(r["probe_error"] for r in rows if r["probe_error"])),
        "speakers": len({r["speaker"] for r in rows if r["speaker"]}),
    }
    logger.debug(
        "ingest: %d files -> %s (sources %s, splits %s, probe errors %s)",
        summary["files"], manifest, summary["by_source"], summary["by_split"],
        summary["probe_errors"] or "none",
    )  # fmt: skip
    return summary
