"""Signal measurements of one track: clipping, loudness (BS.1770), SNR, RMS level and pitch.

Pure functions, numpy in, Python floats or None out (never NaN or infinity). Loudness,
clipping and SNR are measured on the decoded audio, before any normalisation (CONTRACTS.md).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

Interval = tuple[float, float]

PITCH_MIN_HZ = 60.0
PITCH_MAX_HZ = 400.0
# YIN's cumulative-mean-normalised difference must dip below this for a frame to count as voiced
# (0.10-0.15 in de Cheveigné & Kawahara 2002; 0.2 keeps voiced frames down to ~5-10 dB SNR).
YIN_THRESHOLD = 0.2
PITCH_SAMPLE_RATE_HZ = 8000
MIN_VOICED_FRAMES = 10  # 0.1 s of voiced speech; fewer gives no pitch statistics
LOUDNESS_MIN_S = 0.4  # one BS.1770 gating block
SNR_FRAME_S = 0.02
SNR_MIN_FRAMES = 10  # 0.2 s of speech and of non-speech, else SNR is undefined
NOISE_FLOOR_POWER = (
    1e-10  # ~ -100 dBFS, about 16-bit quantisation noise: caps SNR of digital silence
)

# Clipping tolerance per soundfile subtype ("within one quantisation step of the peak").
# Linear PCM: one step inclusive, at least one 16-bit step (analog clipping before a 24-bit
# converter jitters by more than one 24-bit step). mu-law / A-law: the peak level only: their
# top step is 1/16 of full scale, and a whole step would flag loud unclipped speech.
_PEAK_TOLERANCE = {"PCM_S8": 1 / 128, "PCM_U8": 1 / 128, "ULAW": 1e-6, "ALAW": 1e-6}
_DEFAULT_PEAK_TOLERANCE = 1 / 32768
# Lossy codecs ring around a clipped plateau: the file's own peak is an overshoot (1.1-1.4 seen
# on MP3/Vorbis of clipped speech) and the plateau wobbles, so samples at |x| >= 0.95 count
# instead (seen: within ~30% of the pre-encoding share, and 0 to 0.0001 on unclipped speech).
_LOSSY_SUBTYPES = {"MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III", "VORBIS", "OPUS"}
_LOSSY_CLIP_LEVEL = 0.95
_CLIP_RUN = 3
# Samples per piece where a whole-call computation goes piece by piece (float64 temporaries of
# a 4-hour call would take GBs); every such function returns what one whole-array pass does.
CHUNK = 1 << 20


def finite_or_none(value, ndigits: int | None = 3) -> float | None:
    """A JSON-safe float: None for None, NaN or infinity; rounded when `ndigits` is set."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, ndigits) if ndigits is not None else value


def clipped_share(x: np.ndarray, subtype: str = "") -> float:
    """Share of samples on the file's own positive or negative peak, in runs of 3 or more.

    The peak is the file's own (mu-law tops out at 0.980, A-law at 0.984, 8-bit at 0.992), so a
    fixed threshold near 1.0 finds nothing there. A sample counts when it lies within one
    quantisation step of that peak (mu-law / A-law: on the peak level; lossy codecs: at or
    above 0.95 of full scale, see `_LOSSY_SUBTYPES`) and belongs to a run of 3 or more.

    Args:
        x: decoded samples, (n,) or (channels, n); for 2-D input the peaks are the file's.
        subtype: soundfile subtype of the file (PCM_16, PCM_U8, ULAW, MPEG_LAYER_III, ...).

    Returns:
        Share in [0, 1]; 0.0 for empty or all-zero input.

    >>> clipped_share(np.clip(2 * np.sin(np.linspace(0, 20 * np.pi, 1000)), -1, 1), "PCM_16") > 0.3
    True
    """
    x = np.asarray(x)
    if x.size == 0:
        return 0.0
    subtype = (subtype or "").upper()
    if subtype in _LOSSY_SUBTYPES:
        hi, lo, tol = _LOSSY_CLIP_LEVEL, -_LOSSY_CLIP_LEVEL, 0.0
    else:
        hi, lo = float(np.max(x)), float(np.min(x))
        # a hair over one step, so float rounding of decoded levels cannot drop a sample
        tol = _PEAK_TOLERANCE.get(subtype, _DEFAULT_PEAK_TOLERANCE) * 1.001
    rows = x.reshape(-1, x.shape[-1])
    n_clipped = 0
    for row in rows:
        at = []  # where the samples near a peak are, found piece by piece
        for i in range(0, row.size, CHUNK):
            piece = row[i : i + CHUNK]
            near = np.zeros(piece.shape, dtype=bool)
            if hi > tol:
                near |= piece >= hi - tol
            if lo < -tol:
                near |= piece <= lo + tol
            at.append(np.flatnonzero(near) + i)
        n_clipped += _samples_in_runs(np.concatenate(at), _CLIP_RUN)
    return n_clipped / x.size


def _samples_in_runs(at: np.ndarray, min_run: int) -> int:
    """How many of the sorted sample indices `at` belong to runs of at least `min_run`
    consecutive indices."""
    if at.size == 0:
        return 0
    breaks = np.flatnonzero(np.diff(at) != 1) + 1
    lengths = np.diff(np.r_[0, breaks, at.size])
    return int(lengths[lengths >= min_run].sum())


def loudness_lufs(x: np.ndarray, sample_rate_hz: int) -> float | None:
    """Integrated loudness (ITU-R BS.1770-4, gated) in LUFS of (n,) or (channels, n) audio.

    The same K-weighting, blocks and gates as `torchaudio.functional.loudness`, but filtered
    with scipy: torchaudio's `lfilter` runs a Python-level loop on CPU and cost 10% of a whole
    `callqa score` run. Unlike torchaudio, the filtered signal is not clamped to [-1, 1]
    (BS.1770 has no clamp). Up to 5 channels (L, R, C weight 1; surrounds 1.41).

    Returns None when undefined: shorter than one 0.4 s gating block, or nothing above the
    -70 LUFS absolute gate (silence).
    """
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    n = x.shape[-1]
    if n < int(LOUDNESS_MIN_S * sample_rate_hz) + 1 or not np.any(x) or len(x) > 5:
        return None
    block = int(round(LOUDNESS_MIN_S * sample_rate_hz))
    step = int(round(block * 0.25))
    n_blocks = 1 + (n - block) // step
    starts = np.arange(n_blocks) * step
    # Mean square per 400 ms block (75% overlap) from a running sum: O(n), not O(n * block).
    csum = cumsum_at(_k_weighted_squares(x, sample_rate_hz), np.r_[starts, starts + block])
    energy = (csum[:, n_blocks:] - csum[:, :n_blocks]) / block  # (channels, blocks)
    g = np.array([1.0, 1.0, 1.0, 1.41, 1.41])[: len(x), None]
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10 * np.log10(np.sum(g * energy, axis=0))
        gated = block_lufs > -70.0
        if not gated.any():
            return None
        relative = -0.691 + 10 * np.log10(np.sum(g[:, 0] * energy[:, gated].mean(axis=1))) - 10
        gated &= block_lufs > relative
        value = -0.691 + 10 * np.log10(np.sum(g[:, 0] * energy[:, gated].mean(axis=1)))
    value = float(value)
    return value if math.isfinite(value) and value > -70.0 else None


@lru_cache(maxsize=8)
def _k_weighting(sample_rate_hz: int) -> np.ndarray:
    """BS.1770 K-weighting as torchaudio builds it, as second-order sections: a +4 dB high
    shelf at 1500 Hz (Q 1/sqrt 2), then a 38 Hz high-pass (Q 0.5); RBJ cookbook biquads."""
    w0 = 2 * math.pi * 1500.0 / sample_rate_hz
    cos, alpha = math.cos(w0), math.sin(w0) / 2 * math.sqrt(2)
    g = 10 ** (4.0 / 40)
    t1, t2, t3 = 2 * math.sqrt(g) * alpha, (g - 1) * cos, (g + 1) * cos
    shelf_b = [g * ((g + 1) + t2 + t1), -2 * g * ((g - 1) + t3), g * ((g + 1) + t2 - t1)]
    shelf_a = [(g + 1) - t2 + t1, 2 * ((g - 1) - t3), (g + 1) - t2 - t1]
    w0 = 2 * math.pi * 38.0 / sample_rate_hz
    cos, alpha = math.cos(w0), math.sin(w0) / 2 / 0.5
    hp_b = [(1 + cos) / 2, -1 - cos, (1 + cos) / 2]
    hp_a = [1 + alpha, -2 * cos, 1 - alpha]
    return np.array([[*np.divide(b, a[0]), *np.divide(a, a[0])] for b, a in
                     ((shelf_b, shelf_a), (hp_b, hp_a))])  # fmt: skip


def _k_weighted_squares(x: np.ndarray, sample_rate_hz: int, chunk: int = CHUNK):
    """The squared K-weighted signal of (channels, n) audio, in float64 pieces of `chunk`
    samples (the filter state carried over: the values of one whole-array `sosfilt`)."""
    from scipy.signal import sosfilt

    sos = _k_weighting(sample_rate_hz)
    state = np.zeros((sos.shape[0], x.shape[0], 2))
    for i in range(0, x.shape[-1], chunk):
        # filtering a strided view is 3x slower: a contiguous float64 copy of the piece
        piece = np.ascontiguousarray(x[:, i : i + chunk], dtype=np.float64)
        # Digital silence makes the IIR state decay into subnormal floats, which are ~10x
        # slower to compute with; a -240 dB tone at Nyquist keeps it normal, changes no figure.
        piece += np.where(np.arange(i, i + piece.shape[-1]) % 2 == 0, 1e-12, -1e-12)
        y, state = sosfilt(sos, piece, axis=-1, zi=state)
        yield y * y


def cumsum_at(pieces, idx: np.ndarray) -> np.ndarray:
    """`np.r_[0, np.cumsum(whole)][idx]` along the last axis, where `whole` is the
    concatenation of `pieces` ((..., m) float64 arrays), without building either array.

    Bit for bit the same: each piece's running sum starts from the last value of the one
    before, exactly as one cumsum adds it.
    """
    idx = np.asarray(idx, dtype=np.int64)
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    out, carry, done = None, None, 0
    for piece in pieces:
        if out is None:
            out = np.zeros((*piece.shape[:-1], idx.size))
        if carry is not None:
            piece[..., 0] += carry
        run = np.cumsum(piece, axis=-1)
        carry, end = run[..., -1], done + piece.shape[-1]
        lo, hi = np.searchsorted(sorted_idx, [done, end], side="right")
        out[..., order[lo:hi]] = run[..., sorted_idx[lo:hi] - done - 1]
        done = end
    return out if out is not None else np.zeros(idx.size)


def rms_dbfs(x: np.ndarray) -> float | None:
    """RMS level in dB relative to full scale; None for silence or empty input."""
    x = np.asarray(x).reshape(-1)
    if x.size == 0:
        return None
    ms = float(_sum_squares(x, 0, x.size)) / x.size
    return 10.0 * math.log10(ms) if ms > 0 else None


def _sum_squares(x: np.ndarray, lo: int, hi: int, chunk: int = CHUNK) -> np.float64:
    """`np.sum(x[lo:hi].astype(np.float64) ** 2)` without the float64 copy of it all.

    numpy sums pairwise: halves (the first a multiple of 8 long) summed on their own, then
    added. Splitting the same way down to pieces of `chunk` gives the same tree, the same bits.
    """
    n = hi - lo
    if n <= chunk:
        piece = x[lo:hi].astype(np.float64)
        return np.sum(piece * piece)
    half = n // 2 - (n // 2) % 8
    return _sum_squares(x, lo, lo + half, chunk) + _sum_squares(x, lo + half, hi, chunk)


def frame_power(x: np.ndarray, frame: int) -> np.ndarray:
    """Mean power of each whole frame of `frame` samples (float64), in pieces of about
    `CHUNK` samples (each frame's mean is its own: the same values as in one go)."""
    n = x.size // frame
    out = np.empty(n)
    step = max(1, CHUNK // frame)
    for f0 in range(0, n, step):
        f1 = min(n, f0 + step)
        f = np.asarray(x[f0 * frame : f1 * frame], dtype=np.float64).reshape(f1 - f0, frame)
        out[f0:f1] = np.mean(f * f, axis=1)
    return out


def _frames_in(intervals: list[Interval], centers_s: np.ndarray) -> np.ndarray:
    """Boolean mask: frame centre inside any interval."""
    mask = np.zeros(centers_s.shape, dtype=bool)
    for s, e in intervals:
        mask |= (centers_s >= s) & (centers_s < e)
    return mask


def snr_db(x: np.ndarray, sample_rate_hz: int, speech: list[Interval] | None) -> float | None:
    """Signal-to-noise ratio (dB) from 20 ms frame powers.

    With VAD intervals: noise power = median power of non-speech frames (median, so a click or a
    breath does not dominate), signal power = mean power of speech frames minus noise power.
    Without intervals (`speech=None`): the same with the top 50% and bottom 10% of frames.
    Noise power is floored at -100 dBFS so digital silence gives a large finite value.

    Returns:
        SNR in dB, or None when undefined: no speech, or under 0.2 s of speech or of non-speech.
    """
    x = np.asarray(x)
    frame = max(1, int(SNR_FRAME_S * sample_rate_hz))
    power = frame_power(x, frame)
    if power.size == 0:
        return None
    if speech is None:
        if power.size < 2 * SNR_MIN_FRAMES or not np.any(power > 0):
            return None
        order = np.sort(power)
        p_noise = float(np.mean(order[: max(1, order.size // 10)]))
        p_speech = float(np.mean(order[order.size // 2 :]))
    else:
        centers = (np.arange(power.size) + 0.5) * frame / sample_rate_hz
        is_speech = _frames_in(speech, centers)
        if is_speech.sum() < SNR_MIN_FRAMES or (~is_speech).sum() < SNR_MIN_FRAMES:
            return None
        p_noise = float(np.median(power[~is_speech]))
        p_speech = float(np.mean(power[is_speech]))
    p_noise = max(p_noise, NOISE_FLOOR_POWER)
    # Speech frames hold speech + noise; floor the difference at -30 dB so the log stays finite.
    p_signal = max(p_speech - p_noise, p_noise * 1e-3)
    return 10.0 * math.log10(p_signal / p_noise)


def pitch_track(
    x: np.ndarray,
    sample_rate_hz: int,
    speech: list[Interval] | None = None,
    hop_s: float = 0.01,
    window_s: float = 0.025,
    fmin_hz: float = PITCH_MIN_HZ,
    fmax_hz: float = PITCH_MAX_HZ,
    threshold: float = YIN_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Fundamental frequency per frame with YIN (de Cheveigné & Kawahara 2002).

    Only frames whose centre lies in `speech` (all frames if None) are analysed. Audio above
    8 kHz is first resampled to 8 kHz: a 400 Hz ceiling needs no more, and it is ~4x faster.

    Returns:
        (times_s, f0_hz) for the analysed frames; f0 is NaN where the frame is unvoiced.
    """
    if sample_rate_hz > PITCH_SAMPLE_RATE_HZ:
        from callqa.audio.io import resample

        x = resample(np.asarray(x, dtype=np.float32), sample_rate_hz, PITCH_SAMPLE_RATE_HZ)
        sample_rate_hz = PITCH_SAMPLE_RATE_HZ
    x = np.asarray(x)  # frames are cut out of it, then made float64
    window = int(round(window_s * sample_rate_hz))
    hop = max(1, int(round(hop_s * sample_rate_hz)))
    tau_min = max(2, int(math.floor(sample_rate_hz / fmax_hz)))
    tau_max = int(math.ceil(sample_rate_hz / fmin_hz))
    span = window + tau_max + 1
    if x.size < span:
        return np.zeros(0), np.zeros(0)
    starts = np.arange(0, x.size - span + 1, hop)
    centers_s = (starts + window / 2 + tau_max / 2) / sample_rate_hz
    if speech is not None:
        keep = _frames_in(speech, centers_s)
        starts, centers_s = starts[keep], centers_s[keep]
    f0 = np.full(starts.size, np.nan)
    n_fft = 1 << int(math.ceil(math.log2(span + window)))
    taus = np.arange(tau_max + 1)
    chunk = 2048  # frames per batch: bounds memory on hour-long calls
    for c0 in range(0, starts.size, chunk):
        idx = starts[c0 : c0 + chunk, None] + np.arange(span)[None, :]
        frames = x[idx].astype(np.float64)
        frames = frames - frames.mean(axis=1, keepdims=True)
        head = np.fft.rfft(frames[:, :window], n_fft)
        full = np.fft.rfft(frames, n_fft)
        # r[tau] = sum_j x[j] x[j + tau] over the integration window
        r = np.fft.irfft(np.conj(head) * full, n_fft)[:, : tau_max + 1]
        cs = np.concatenate([np.zeros((frames.shape[0], 1)), np.cumsum(frames**2, axis=1)], axis=1)
        e0 = cs[:, window]
        e_tau = cs[:, taus + window] - cs[:, taus]
        d = np.maximum(e0[:, None] + e_tau - 2 * r, 0.0)
        d[:, 0] = 0.0
        cum = np.cumsum(d[:, 1:], axis=1)
        cmnd = np.ones_like(d)
        with np.errstate(divide="ignore", invalid="ignore"):
            cmnd[:, 1:] = np.where(cum > 0, d[:, 1:] * taus[1:] / cum, 1.0)
        seg = cmnd[:, tau_min - 1 : tau_max + 1]  # one extra lag each side for the minimum test
        mid = seg[:, 1:-1]
        local_min = (mid <= seg[:, :-2]) & (mid <= seg[:, 2:])
        cand = local_min & (mid < threshold)
        voiced = cand.any(axis=1) & (e0 > window * 1e-8)
        first = np.argmax(cand, axis=1)
        tau = first + tau_min
        rows = np.flatnonzero(voiced)
        if rows.size == 0:
            continue
        t = tau[rows]
        # Parabolic interpolation between neighbouring lags for sub-sample period.
        a, b, cc = cmnd[rows, t - 1], cmnd[rows, t], cmnd[rows, np.minimum(t + 1, tau_max)]
        denom = a - 2 * b + cc
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(np.abs(denom) > 1e-12, 0.5 * (a - cc) / denom, 0.0)
        period = t + np.clip(shift, -1, 1)
        hz = sample_rate_hz / period
        hz[(hz < fmin_hz * 0.95) | (hz > fmax_hz * 1.05)] = np.nan
        f0[c0 + rows] = hz
    return centers_s, f0


def pitch_stats(x: np.ndarray, sample_rate_hz: int, speech: list[Interval] | None) -> dict:
    """Pitch statistics (Hz) over the voiced frames inside VAD speech.

    `pitch_min_hz` / `pitch_max_hz` are the 5th / 95th percentiles: single-frame octave errors
    would otherwise decide them. All values are None with under 0.1 s of voiced speech.
    """
    keys = ("pitch_mean_hz", "pitch_std_hz", "pitch_min_hz", "pitch_max_hz")
    if speech is not None and not speech:
        return dict.fromkeys(keys)
    _, f0 = pitch_track(x, sample_rate_hz, speech)
    f0 = f0[np.isfinite(f0)]
    if f0.size < MIN_VOICED_FRAMES:
        return dict.fromkeys(keys)
    values = (np.mean(f0), np.std(f0), np.percentile(f0, 5), np.percentile(f0, 95))
    return {k: finite_or_none(v, 1) for k, v in zip(keys, values, strict=True)}
