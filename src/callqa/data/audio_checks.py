"""Per-file audio checks of `callqa validate`: decode a file in blocks, measure what a header
cannot show (non-finite samples, silence, clipping, how much speech), and say which limits of
the `validate` section it breaks.

    >>> from callqa.config import ValidateConfig
    >>> file_reasons(AudioStats(8000, 8000, 1, "PCM_16", max_frame_dbfs=-20.0), ValidateConfig())
    {}
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from callqa.audio.io import AudioError, load_audio, probe, read_all, resample, unreadable_error
from callqa.cache import StageCache, library_versions
from callqa.config import VadConfig, ValidateConfig
from callqa.files import content_id
from callqa.schemas import SAMPLE_RATE_HZ

FRAME_S = 0.05  # loudness frame for the silence check
BLOCK_FRAMES = 1 << 18  # samples per channel decoded at a time for long files
IN_MEMORY_SAMPLES = 1 << 22  # files up to this many samples (all channels) are read at once
CLIP_RUN = 3  # CONTRACTS: near-peak samples count in runs of 3 or more
STATS_VERSION = 2  # cache code version: bump when AudioStats would be measured differently
# What decodes, resamples and measures the samples (Silero VAD for speech_s).
LIBRARIES = ("numpy", "soundfile", "libsndfile", "torch", "torchaudio", "silero-vad")


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


def cached_measure(
    path: str, cache: StageCache | None, vad: VadConfig, content: str | None = None
) -> AudioStats:
    """measure_audio through the stats cache (None: no cache), keyed by the bytes read now
    (`content`: their `content_id` when the caller has it already)."""
    header = probe(path)  # always: the file may have gone or changed since ingest
    if content is None and cache is not None:
        try:
            content = content_id(path)
        except OSError:
            pass  # measure_audio says what is wrong with the file
    if cache is None:
        content = None
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
