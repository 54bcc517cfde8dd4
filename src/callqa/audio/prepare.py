"""Decoded audio -> `Prepared`: 16 kHz role tracks, VAD speech, input stats and log-mel.

Pure functions, no files: `prepare(Audio, cfg)`, built from `split_roles`, `remove_dc`,
`quantise_pcm16`, `condition` (with `spectral_gate`), `log_mel` and `input_stats`. The
`callqa preprocess` stage (`audio/preprocess.py`) stores the result; `callqa score` uses it in
memory.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from callqa.audio.crosstalk import suppress_crosstalk
from callqa.audio.io import Audio, AudioError, resample
from callqa.audio.signal_stats import (
    CHUNK,
    clipped_share,
    finite_or_none,
    frame_power,
    loudness_lufs,
    rms_dbfs,
    snr_db,
)
from callqa.audio.vad import detect_speech_many
from callqa.config import PreprocessConfig
from callqa.schemas import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

CORRELATION_MONO = 0.99  # CONTRACTS: channels this correlated are one signal
SILENT_CHANNEL_DBFS = -60.0  # a channel whose loudest second stays under this carries nobody
ECHO_ONLY_DB = 35.0  # a channel this far under the other in its loudest second carries echo
LOUD_FRAMES = 20  # 50 ms frames: the level a channel reaches in 1 s of its audio (clicks don't)
MAX_GAIN_DB = 40.0  # loudness normalisation never lifts near-silence further than this
_ROLE_ORDER = ("agent", "customer")


@dataclass
class Prepared:
    """One decoded call, ready for ASR, metrics and features."""

    tracks: dict[str, np.ndarray]  # 16 kHz mono float32 role audio, not normalised
    roles_from: str  # "channels" | "diarization"
    speech: dict[str, list[tuple[float, float]]]  # Silero VAD speech intervals per track
    # (n_tracks, n_mels, frames) float32, of the conditioned audio; None when not asked for
    logmel: np.ndarray | None
    input_stats: dict  # per track, of the decoded audio before any processing
    duration_s: float
    sample_rate_hz: int  # of the original file
    channels: int  # of the original file
    mono_reason: str | None = None  # mono_file | identical_channels | silent_channel | mixdown
    subtype: str = ""
    track_sample_rate_hz: int = SAMPLE_RATE_HZ
    extra: dict = field(default_factory=dict)

    @property
    def mono(self) -> bool:
        return self.roles_from == "diarization"


def _correlation(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 20) -> float:
    """Pearson correlation in float64, in chunks (hour-long files stay cheap in memory)."""
    n = a.size
    if n == 0:
        return 0.0
    ma, mb = float(np.mean(a, dtype=np.float64)), float(np.mean(b, dtype=np.float64))
    sab = saa = sbb = 0.0
    for i in range(0, n, chunk):
        x = a[i : i + chunk].astype(np.float64) - ma
        y = b[i : i + chunk].astype(np.float64) - mb
        sab += float(x @ y)
        saa += float(x @ x)
        sbb += float(y @ y)
    den = math.sqrt(saa * sbb)
    return sab / den if den > 0 else 0.0


MAX_SKEW = 2048  # samples (128 ms at 16 kHz): dual-mono exports can be this far apart


def _skew(a: np.ndarray, b: np.ndarray, window: int = 1 << 19) -> int:
    """The lag (b behind a, samples, |lag| <= MAX_SKEW) where the channels match best, from
    the cross-correlation of their first `window` samples (FFT)."""
    n = min(a.size, b.size, window)
    if n <= 2 * MAX_SKEW:
        return 0
    x = a[:n].astype(np.float64) - float(np.mean(a[:n]))
    y = b[:n].astype(np.float64) - float(np.mean(b[:n]))
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(x, size)), size)
    lags = np.r_[np.arange(0, MAX_SKEW + 1), np.arange(-MAX_SKEW, 0)]
    return int(lags[np.argmax(np.abs(xc[lags]))])


def _aligned_correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """(correlation, lag) of the channels at their best lag: the same mix on both channels a
    few ms apart is one signal (at lag 0 it correlates near 0 and was scored as two parties)."""
    corr = _correlation(a, b)
    lag = 0 if abs(corr) > CORRELATION_MONO else _skew(a, b)
    if lag > 0:
        corr = _correlation(a[: a.size - lag], b[lag:])
    elif lag < 0:
        corr = _correlation(a[-lag:], b[: b.size + lag])
    return corr, lag


def remove_dc(x: np.ndarray) -> np.ndarray:
    """The signal minus its mean. Cheap sound cards add a DC offset, and Silero VAD misses
    most speech riding on one (seen: a 0.3 offset lost 4 of 6 turns of a real call)."""
    x = np.asarray(x, dtype=np.float32)
    return x - np.float32(x.mean(dtype=np.float64)) if x.size else x


def split_roles(
    samples: np.ndarray, channel_roles: tuple[str, str] = ("agent", "customer")
) -> tuple[dict[str, np.ndarray], dict[str, list[int]], str | None]:
    """Decide stereo roles vs mono and pick the decoded signal behind each track.

    Stereo with two live, distinct channels -> {"agent", "customer"} (channel i ->
    channel_roles[i]). Everything else is one "mono" track: a mono file; identical channels
    (|correlation| > 0.99, also at a skew up to MAX_SKEW samples: then channel 0 alone); one
    channel whose loudest second is below -60 dBFS (the live one is kept, not a -6 dB mix);
    more than two channels (mixed down: `validate` quarantines those by default, so a user who
    raised `max_channels` gets diarization rather than an error).

    Returns:
        (signal per track at the original rate, decoded channel rows behind each track (for
        clipping), mono reason or None).
    """
    n_ch = samples.shape[0]
    if n_ch == 1:
        return {"mono": samples[0]}, {"mono": [0]}, "mono_file"
    if n_ch > 2:
        logger.warning("%d channels: mixing down to mono, roles from diarization", n_ch)
        return {"mono": samples.mean(axis=0)}, {"mono": list(range(n_ch))}, "mixdown"
    levels = [_loud_dbfs(remove_dc(ch)) for ch in samples]  # a DC offset is not a voice
    top = max((lv for lv in levels if lv is not None), default=None)
    silent = [  # under the floor, or so far under the other channel that it can only be echo
        lv is None or lv < SILENT_CHANNEL_DBFS or lv < top - ECHO_ONLY_DB for lv in levels
    ]
    if silent[0] != silent[1]:
        live = 0 if silent[1] else 1
        return {"mono": samples[live]}, {"mono": [live]}, "silent_channel"
    if not any(silent):
        corr, lag = _aligned_correlation(samples[0], samples[1])
        if corr > CORRELATION_MONO and lag == 0:
            return {"mono": samples.mean(axis=0)}, {"mono": [0, 1]}, "identical_channels"
        if abs(corr) > CORRELATION_MONO:  # phase-inverted or skewed: a mix would comb or cancel
            return {"mono": samples[0]}, {"mono": [0, 1]}, "identical_channels"
    by_role = {channel_roles[0]: 0, channel_roles[1]: 1}
    order = [r for r in _ROLE_ORDER if r in by_role]
    return (
        {r: samples[by_role[r]] for r in order},
        {r: [by_role[r]] for r in order},
        None,
    )


def _rows(x: np.ndarray, rows: list[int]) -> np.ndarray:
    """`x[rows]`, as a view (not a copy of the call) when the rows are consecutive."""
    a, b = rows[0], rows[-1] + 1
    return x[a:b] if list(rows) == list(range(a, b)) else x[rows]


def _loud_dbfs(x: np.ndarray, frame: int = 800) -> float | None:
    """The power of a channel's LOUD_FRAMES-th loudest 50 ms frame (at 16 kHz; shorter frames
    at lower rates), in dBFS: a party who speaks for 2 s of a 2-hour call is live, a channel
    with a few clicks is not. The whole file's level for a file shorter than that."""
    power = frame_power(x, frame)
    if power.size < LOUD_FRAMES:
        return rms_dbfs(x)
    top = float(np.partition(power, power.size - LOUD_FRAMES)[power.size - LOUD_FRAMES])
    return float(10.0 * np.log10(top)) if top > 0 else None


def quantise_pcm16(x: np.ndarray) -> np.ndarray:
    """Round float audio onto the 16-bit grid (k / 32768), so the stored FLAC reads back equal.

    Sample by sample, in pieces of `CHUNK` (the float64 temporaries of a whole 4-hour track
    would take GBs)."""
    x = np.asarray(x)
    out = np.empty(x.shape, np.float32)
    flat_in, flat_out = x.reshape(-1), out.reshape(-1)
    for i in range(0, flat_in.size, CHUNK):
        q = np.clip(np.round(flat_in[i : i + CHUNK].astype(np.float64) * 32768.0), -32768, 32767)
        # + 0.0 turns the -0.0 that rounding leaves into 0.0, as a FLAC read-back has it: the
        # ASR cache hashes the bytes, and `callqa score` must find what `callqa transcribe` stored.
        flat_out[i : i + CHUNK] = q / 32768.0 + 0.0
    return out


def spectral_gate(
    x: np.ndarray,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    n_fft: int = 512,
    hop_length: int = 128,
    n_std: float = 1.5,
    noise_quantile: float = 0.1,
    floor_db: float = -18.0,
) -> np.ndarray:
    """Stationary spectral gating (torch STFT): attenuate bins below a per-frequency noise gate.

    The noise profile comes from the quietest `noise_quantile` of frames; the gate sits
    `n_std` standard deviations above their mean level in dB. The mask is smoothed over
    neighbouring bins and frames (no musical-noise speckle) and attenuates to `floor_db`
    rather than to zero.
    """
    import torch
    import torch.nn.functional as F

    x = np.asarray(x, dtype=np.float32)
    if x.size < 2 * n_fft:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x))
    window = torch.hann_window(n_fft)
    spec = torch.stft(t, n_fft, hop_length, window=window, return_complex=True)
    mag_db = 20 * torch.log10(spec.abs().clamp_min(1e-10))
    energy = spec.abs().pow(2).sum(dim=0)
    k = max(2, int(spec.shape[1] * noise_quantile))
    quiet = torch.topk(energy, min(k, spec.shape[1]), largest=False).indices
    noise = mag_db[:, quiet]
    gate = noise.mean(dim=1) + n_std * noise.std(dim=1, unbiased=False)
    mask = (mag_db > gate[:, None]).float()[None, None]
    mask = F.avg_pool2d(mask, kernel_size=(3, 5), stride=1, padding=(1, 2), count_include_pad=False)
    floor = 10 ** (floor_db / 20)
    gain = floor + (1 - floor) * mask[0, 0]
    y = torch.istft(spec * gain, n_fft, hop_length, window=window, length=x.size)
    return y.numpy().astype(np.float32)


def condition(
    x16k: np.ndarray, cfg: PreprocessConfig, sample_rate_hz: int = SAMPLE_RATE_HZ
) -> np.ndarray:
    """Audio for the log-mel image and the emotion model (never for VAD, ASR or metrics).

    DC removal, pre-emphasis (`cfg.preemphasis`), optional spectral-gating noise reduction
    (`cfg.denoise`), then gain to `cfg.target_lufs`. Silence or audio under 0.4 s has no
    loudness and keeps its level; the gain is capped at +40 dB and so the peak stays <= 1.
    """
    import torch
    import torchaudio.functional as AF

    x = remove_dc(x16k)
    if x.size == 0:
        return x.copy()
    if cfg.preemphasis > 0:
        x = AF.preemphasis(torch.from_numpy(np.ascontiguousarray(x)), cfg.preemphasis).numpy()
    if cfg.denoise:
        x = spectral_gate(x, sample_rate_hz)
    level = loudness_lufs(x, sample_rate_hz)
    if level is not None:
        gain_db = min(cfg.target_lufs - level, MAX_GAIN_DB)
        peak = float(np.max(np.abs(x)))
        if peak > 0:  # a float array would not wrap, but the emotion model expects [-1, 1]
            gain_db = min(gain_db, -20 * math.log10(peak))
        x = x * np.float32(10 ** (gain_db / 20))
    return x.astype(np.float32, copy=False)


def log_mel(x16k: np.ndarray, cfg: PreprocessConfig, chunk_frames: int = 60000) -> np.ndarray:
    """(n_mels, frames) float32 natural-log mel power of 16 kHz audio.

    Frames are centred (reflect padding), frame i at sample i * hop_length; computed in chunks
    of `chunk_frames` so an hour-long call does not build one giant STFT.
    """
    import torch
    import torchaudio

    x = np.asarray(x16k, dtype=np.float32)
    n_frames = 1 + x.size // cfg.hop_length
    pad = cfg.n_fft // 2
    t = torch.from_numpy(np.ascontiguousarray(x))[None]
    mode = "reflect" if x.size > pad + cfg.n_fft else "constant"  # reflect needs more samples
    padded = torch.nn.functional.pad(t, (pad, pad + cfg.n_fft), mode=mode)[0]
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate_hz,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        center=False,
        power=2.0,
    )
    parts = []
    for f0 in range(0, n_frames, chunk_frames):
        f1 = min(n_frames, f0 + chunk_frames)
        seg = padded[f0 * cfg.hop_length : (f1 - 1) * cfg.hop_length + cfg.n_fft]
        parts.append(mel(seg)[:, : f1 - f0])
    out = torch.cat(parts, dim=1) if parts else torch.zeros(cfg.n_mels, 0)
    return torch.log(out.clamp_min(1e-10)).numpy().astype(np.float32)


def input_stats(
    source: np.ndarray,
    rows: np.ndarray,
    sample_rate_hz: int,
    subtype: str,
    speech: list[tuple[float, float]],
) -> dict:
    """Stats of decoded audio: loudness, SNR and RMS of `source`; clipping and peak of `rows`.

    Args:
        source: the decoded signal behind one track (original rate, no processing).
        rows: the decoded channels it came from, (k, n): clipping is counted per channel on
            the file's own levels (a mix of near-identical channels hides flat tops).
        sample_rate_hz: original rate; `speech` intervals are in seconds.
        subtype: soundfile subtype (sets the quantisation step for clipping).
        speech: VAD intervals of the track, for SNR.
    """
    ac = remove_dc(source)  # a DC offset is neither signal nor noise (it read as -27 dB SNR)
    return {
        "loudness_lufs": finite_or_none(loudness_lufs(source, sample_rate_hz), 2),
        "clipped_share": finite_or_none(max(clipped_share(r, subtype) for r in rows), 6),
        "snr_db": finite_or_none(snr_db(ac, sample_rate_hz, speech), 2),
        # max |x| without an |x| copy of the call
        "peak": finite_or_none(max(np.max(rows), -np.min(rows)) if rows.size else None, 4),
        "rms_dbfs": finite_or_none(rms_dbfs(ac), 2),
    }


def prepare(audio: Audio, cfg: PreprocessConfig, with_logmel: bool = True) -> Prepared:
    """Decoded audio -> role tracks at 16 kHz, VAD speech, input stats and log-mel.

    `with_logmel=False` skips conditioning and the log-mel image (`logmel` is None): scoring
    needs neither until a model reads them.

    Raises:
        AudioError: `nan_samples` when the decoded samples are not all finite.
    """
    x, sr = audio.samples, audio.sample_rate_hz
    if not np.all(np.isfinite(x)):
        raise AudioError("nan_samples", "the decoded audio holds NaN or infinite samples")
    sources, rows, reason = split_roles(x, cfg.channel_roles)
    tracks = {
        name: quantise_pcm16(resample(remove_dc(sig), sr, cfg.sample_rate_hz))
        for name, sig in sources.items()
    }
    if cfg.crosstalk and not reason:
        tracks, _ = suppress_crosstalk(tracks, cfg.sample_rate_hz)
    # 3 decimals, as stored and as in results (CONTRACTS): memory and disk agree exactly
    found = detect_speech_many(list(tracks.values()), cfg.sample_rate_hz, cfg.vad)
    speech = {
        name: [(round(s, 3), round(e, 3)) for s, e in intervals]
        for name, intervals in zip(tracks, found, strict=True)
    }
    stats = {
        name: input_stats(sources[name], _rows(x, rows[name]), sr, audio.subtype, speech[name])
        for name in tracks
    }
    logmel = None
    if with_logmel:
        logmel = np.stack(
            [log_mel(condition(t, cfg, cfg.sample_rate_hz), cfg) for t in tracks.values()]
        )
    return Prepared(
        tracks=tracks,
        roles_from="diarization" if reason else "channels",
        speech=speech,
        logmel=logmel,
        input_stats=stats,
        duration_s=audio.duration_s,
        sample_rate_hz=sr,
        channels=audio.channels,
        mono_reason=reason,
        subtype=audio.subtype,
        track_sample_rate_hz=cfg.sample_rate_hz,
    )
