"""`callqa validate`: manifest.parquet -> accepted.parquet + quarantine.parquet + Data Docs.

Two layers: a Great Expectations suite guards the manifest (ids, header facts, labels, unique
content) and writes Data Docs; per-file checks decode each file in blocks and catch what a
header cannot show (NaN samples, silence, clipping). Both feed one list of reason codes per file.

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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from callqa.audio.io import AudioError, load_audio, probe, read_all, resample, unreadable_error
from callqa.cache import StageCache, library_versions
from callqa.config import VadConfig, ValidateConfig
from callqa.files import atomic_path, content_id
from callqa.schemas import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

# Quarantine codes in CONTRACTS.md order; a file's reasons are always listed in this order.
CODES = [
    "missing_file", "empty_file", "not_audio", "unreadable", "too_short", "too_long",
    "too_many_channels", "sample_rate_too_low", "nan_samples", "silent", "clipped", "no_speech",
    "unknown_label", "label_out_of_scope", "duplicate_content",
]  # fmt: skip
FILE_CODES = ("missing_file", "empty_file", "not_audio", "unreadable")
FRAME_S = 0.05  # loudness frame for the silence check
BLOCK_FRAMES = 1 << 18  # samples per channel decoded at a time for long files
IN_MEMORY_SAMPLES = 1 << 22  # files up to this many samples (all channels) are read at once
CLIP_RUN = 3  # CONTRACTS: near-peak samples count in runs of 3 or more
STATS_VERSION = 2  # cache code version: bump when AudioStats would be measured differently
# What decodes, resamples and measures the samples (Silero VAD for speech_s).
LIBRARIES = ("numpy", "soundfile", "libsndfile", "torch", "torchaudio", "silero-vad")
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


@dataclass
class AudioStats:
    """What the per-file checks measure on the decoded samples (independent of thresholds)."""

    frames: int
    sample_rate_hz: int
    channels: int
    subtype: str
    nonfinite: int = 0  # NaN or infinite samples
    peak_pos: float = 0.0
    peak_neg: float = 0.0
    max_frame_dbfs: float | None = None  # loudest 50 ms frame, RMS re full scale; None if empty
    clipped_share: float | None = None  # None when not measured (silent or non-finite file)
    speech_s: float | None = None  # Silero VAD speech, union over channels; None if not measured

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate_hz if self.sample_rate_hz else 0.0


# ---------------------------------------------------------------- clipping


def clip_bounds(subtype: str, peak_pos: float, peak_neg: float) -> tuple[float, float]:
    """Sample levels at or beyond which a sample counts towards the clipping share.

    Same rule and tolerances as `callqa.audio.signal_stats.clipped_share` (one definition,
    CONTRACTS: within one quantisation step of the file's own peak; lossy codecs use a fixed
    level), but split out so a long file can be counted block by block once its peaks are known.

    Example:
        >>> clip_bounds("PCM_16", 0.5, -1.0)[0] < 0.5
        True
    """
    from callqa.audio import signal_stats as stats

    subtype = (subtype or "").upper()
    if subtype in stats._LOSSY_SUBTYPES:
        return stats._LOSSY_CLIP_LEVEL, -stats._LOSSY_CLIP_LEVEL
    tol = stats._PEAK_TOLERANCE.get(subtype, stats._DEFAULT_PEAK_TOLERANCE) * 1.001
    hi = peak_pos - tol if peak_pos > tol else math.inf
    lo = peak_neg + tol if peak_neg < -tol else -math.inf
    return hi, lo


class _RunCounter:
    """Counts samples in runs of >= `min_run` flagged samples, across block boundaries."""

    def __init__(self, channels: int, min_run: int = CLIP_RUN):
        self.min_run = min_run
        self.carry = np.zeros(channels, dtype=np.int64)  # open run length at block end
        self.total = 0

    def add(self, mask: np.ndarray) -> None:
        """mask: bool (channels, n) for one block."""
        n = mask.shape[1]
        for ch in range(mask.shape[0]):
            edges = np.diff(np.concatenate(([0], mask[ch].view(np.int8), [0])))
            starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
            lengths = ends - starts
            if self.carry[ch]:
                if starts.size and starts[0] == 0:
                    lengths[0] += self.carry[ch]
                else:
                    self._close(int(self.carry[ch]))
                self.carry[ch] = 0
            if lengths.size and ends[-1] == n:
                self.carry[ch] = lengths[-1]
                lengths = lengths[:-1]
            self.total += int(lengths[lengths >= self.min_run].sum())

    def _close(self, length: int) -> None:
        if length >= self.min_run:
            self.total += length

    def finish(self) -> int:
        for c in self.carry:
            self._close(int(c))
        self.carry[:] = 0
        return self.total


# ---------------------------------------------------------------- decoding in blocks


def _blocks(path: Path, frames: int, channels: int, frame_len: int):
    """Yield float32 (channels, n) blocks; whole-file for small files, streamed otherwise.

    Returns a function that starts a new pass, so a long file is decoded twice (peaks first,
    then clipping) instead of being held in memory.
    """
    import soundfile as sf

    if frames * channels <= IN_MEMORY_SAMPLES:
        with sf.SoundFile(str(path)) as f:
            data = read_all(f).T
        return lambda: iter([data])
    block = max(frame_len, (BLOCK_FRAMES // frame_len) * frame_len)  # frames stay aligned

    def stream():
        with sf.SoundFile(str(path)) as f:
            while True:
                data = f.read(block, dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    return
                yield data.T

    return stream


def measure_audio(
    path: str | Path, header: dict | None = None, vad: VadConfig | None = None
) -> AudioStats:
    """Decode a file in blocks and measure non-finite samples, peaks, loudness and clipping.

    Args:
        path: audio file.
        header: `callqa.audio.io.probe` result if already known.
        vad: when given, also measure how much speech Silero VAD finds (`speech_s`), unless
            the file is empty, digital silence or holds non-finite samples.

    Raises:
        AudioError: the file is missing, empty, not audio or cannot be decoded (also when it
            breaks part-way, or the process may not read it).
    """
    path = Path(path)
    info = header or probe(path)
    sr, channels = info["sample_rate_hz"], info["channels"]
    frame_len = max(1, round(FRAME_S * sr))
    stats = AudioStats(0, sr, channels, info["subtype"], peak_pos=-math.inf, peak_neg=math.inf)
    max_ms = 0.0
    try:
        passes = _blocks(path, info["frames"], channels, frame_len)
        for x in passes():
            stats.frames += x.shape[1]
            finite = np.isfinite(x)
            bad = x.size - int(np.count_nonzero(finite))
            if bad:
                stats.nonfinite += bad
                x = np.where(finite, x, 0.0)
            if x.size == 0:
                continue
            stats.peak_pos = max(stats.peak_pos, float(x.max()))
            stats.peak_neg = min(stats.peak_neg, float(x.min()))
            n_full = x.shape[1] // frame_len * frame_len
            sq = np.square(x, dtype=np.float64)
            if n_full:
                ms = sq[:, :n_full].reshape(channels, -1, frame_len).mean(axis=2)
                max_ms = max(max_ms, float(ms.max()))
            if n_full < x.shape[1]:
                max_ms = max(max_ms, float(sq[:, n_full:].mean(axis=1).max()))
        if stats.frames == 0:
            stats.peak_pos = stats.peak_neg = 0.0
            return stats
        stats.max_frame_dbfs = 10 * math.log10(max_ms) if max_ms > 0 else -math.inf
        if stats.nonfinite:
            return stats  # quarantined anyway
        if stats.peak_pos - stats.peak_neg <= 0:  # a constant signal: no clipping, no speech
            stats.speech_s = 0.0 if vad is not None else None
            return stats
        hi, lo = clip_bounds(stats.subtype, stats.peak_pos, stats.peak_neg)
        counter = _RunCounter(channels)
        for x in passes():
            counter.add((x >= hi) | (x <= lo))
        stats.clipped_share = counter.finish() / (stats.frames * channels)
        if vad is not None and stats.max_frame_dbfs > -math.inf:
            stats.speech_s = measure_speech_s(path, vad)
    except AudioError:
        raise
    except PermissionError as err:
        raise unreadable_error(path, err) from None
    except Exception as err:  # noqa: BLE001 - soundfile raises several types mid-stream
        raise AudioError(
            "unreadable", f"{path.name}: decoding failed part-way (truncated or corrupt: {err})"
        ) from None
    return stats


def measure_speech_s(path: str | Path, vad: VadConfig) -> float:
    """Seconds of speech Silero VAD finds in a file: the union over its channels, at 16 kHz."""
    from callqa.audio.metrics import merge_intervals, total_s
    from callqa.audio.prepare import remove_dc
    from callqa.audio.vad import detect_speech_many

    audio = load_audio(path)
    tracks = [resample(remove_dc(ch), audio.sample_rate_hz, SAMPLE_RATE_HZ) for ch in audio.samples]
    found = [iv for ivs in detect_speech_many(tracks, SAMPLE_RATE_HZ, vad) for iv in ivs]
    return total_s(merge_intervals(found))  # the union: one voice on both channels counts once


def stats_cache(
    vad: VadConfig, root: Path | None = None, libraries: dict | None = None
) -> StageCache:
    """The `validate` cache of `AudioStats`: keyed by the file's bytes, the constants and VAD
    settings that shape the stats, STATS_VERSION, Silero's version and the decoding libraries
    (not by any threshold)."""
    versions = library_versions(LIBRARIES) if libraries is None else libraries
    return StageCache(
        "validate",
        STATS_VERSION,
        params={"frame_s": FRAME_S, "clip_run": CLIP_RUN, "vad": vad.model_dump(mode="json")},
        model=f"silero-vad=={versions.get('silero-vad')}",
        device="cpu",
        compute_type="float32",
        libraries=versions,
        root=root,
    )


def _cached_measure(path: str, cache: StageCache | None, vad: VadConfig) -> AudioStats:
    """measure_audio through the stats cache (None: no cache), keyed by the bytes read now."""
    header = probe(path)  # always: the file may have gone or changed since ingest
    try:
        content = content_id(path) if cache is not None else None
    except OSError:
        content = None  # measure_audio says what is wrong with the file
    if content is not None:
        data = cache.get_json(content)
        if data is not None:
            return AudioStats(**data)
    stats = measure_audio(path, header, vad)
    if content is not None:
        cache.put_json(content, asdict(stats))
    return stats


# ---------------------------------------------------------------- per-file reasons


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.3g} s" if seconds < 10 else f"{seconds:.0f} s"


def file_reasons(stats: AudioStats, cfg: ValidateConfig) -> dict[str, str]:
    """Reason code -> sentence for one decoded file's measurements."""
    out: dict[str, str] = {}
    if stats.duration_s < cfg.min_duration_s:
        out["too_short"] = (
            f"lasts {_fmt_s(stats.duration_s)}, shorter than validate.min_duration_s "
            f"({cfg.min_duration_s} s)"
        )
    if stats.duration_s > cfg.max_duration_s:
        out["too_long"] = (
            f"lasts {_fmt_s(stats.duration_s)}, longer than validate.max_duration_s "
            f"({cfg.max_duration_s:.0f} s); split the recording"
        )
    if stats.channels > cfg.max_channels:
        out["too_many_channels"] = (
            f"has {stats.channels} channels, more than validate.max_channels "
            f"({cfg.max_channels}); export it as mono or agent/customer stereo"
        )
    if stats.sample_rate_hz < cfg.min_sample_rate_hz:
        out["sample_rate_too_low"] = (
            f"is sampled at {stats.sample_rate_hz} Hz, below validate.min_sample_rate_hz "
            f"({cfg.min_sample_rate_hz} Hz)"
        )
    if stats.nonfinite:
        out["nan_samples"] = (
            f"contains {stats.nonfinite} NaN or infinite samples; re-export it from the source"
        )
    elif stats.max_frame_dbfs is not None and stats.max_frame_dbfs < cfg.silence_dbfs:
        level = (
            "digital silence"
            if stats.max_frame_dbfs == -math.inf
            else (f"its loudest {FRAME_S * 1000:.0f} ms stays at {stats.max_frame_dbfs:.1f} dBFS")
        )
        out["silent"] = f"is silent ({level}, below validate.silence_dbfs {cfg.silence_dbfs} dBFS)"
    if stats.clipped_share is not None and stats.clipped_share > cfg.max_clipped_share:
        out["clipped"] = (
            f"is clipped: {100 * stats.clipped_share:.1f}% of samples sit at the peak level, "
            f"more than validate.max_clipped_share ({100 * cfg.max_clipped_share:.1f}%)"
        )
    if not out and stats.speech_s is not None and stats.speech_s < cfg.min_speech_s:
        out["no_speech"] = (
            f"holds no speech: the voice detector finds {stats.speech_s:.1f} s, less than "
            f"validate.min_speech_s ({cfg.min_speech_s:g} s); line noise, a tone or music "
            "alone is not a call"
        )
    return out


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
            stats = _cached_measure(row["path"], cache, vad)
        reasons.update(file_reasons(stats, cfg))
    except AudioError as err:
        reasons.setdefault(err.code, err.message)
    reasons.update(label_reasons(row, cfg))
    return reasons


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
