"""Signal measurements (clipping, loudness, SNR, pitch) on synthetic and real audio."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile as sf

from callqa.audio.signal_stats import clipped_share, loudness_lufs, pitch_stats, snr_db
from callqa.schemas import SAMPLE_RATE_HZ as SR


def _roundtrip(x: np.ndarray, sr: int, subtype: str, fmt: str = "WAV") -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, x, sr, subtype=subtype, format=fmt)
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    return y


def _harmonic(f0: float, seconds: float = 2.0, sr: int = SR, amp: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return amp * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))


# ---------------------------------------------------------------------------------- clipping


def _sine(amp: float, sr: int = 8000, f: float = 200.0, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return np.clip(amp * np.sin(2 * np.pi * f * t), -1, 1)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_U8", "ULAW", "ALAW"])
def test_clipped_sine_found_in_every_encoding(subtype):
    clipped = _roundtrip(_sine(2.0), 8000, subtype)
    # a sine at twice full scale sits on its rails 2/3 of the time
    assert clipped_share(clipped, subtype) == pytest.approx(2 / 3, abs=0.03)
    # a fixed 0.999 threshold finds nothing on 8-bit / companded files: the file's own peak does
    if subtype != "PCM_16":
        assert clipped.max() < 0.999  # 0.992 (8-bit), 0.980 (mu-law), 0.984 (A-law)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_U8", "ULAW"])
def test_unclipped_real_speech_is_not_clipped(subtype, realdata):
    path = realdata / "asr" / "librivox_ss01_0870.wav"
    x, sr = sf.read(path, dtype="float32")
    loud = x / np.abs(x).max() * 0.9
    assert clipped_share(_roundtrip(loud, sr, subtype), subtype) < 1e-4
    hard = np.clip(x / np.abs(x).max() * 3.0, -1, 1)
    assert clipped_share(_roundtrip(hard, sr, subtype), subtype) > 0.01


def test_clipping_needs_runs_of_three():
    x = np.zeros(100)
    x[10:12] = 1.0  # two samples on the peak: a sharp peak, not a clip
    x[50:54] = -1.0
    assert clipped_share(x, "PCM_16") == pytest.approx(0.04)
    assert clipped_share(np.zeros(10), "PCM_16") == 0.0


# ---------------------------------------------------------------------------------- loudness, snr


def test_loudness_monotone_with_gain_and_undefined_on_silence():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(SR * 2) * 0.05).astype(np.float32)
    levels = [loudness_lufs(x * g, SR) for g in (0.25, 0.5, 1.0, 2.0)]
    assert all(b > a for a, b in zip(levels, levels[1:], strict=False))
    assert levels[2] - levels[1] == pytest.approx(20 * math.log10(2), abs=0.1)
    assert loudness_lufs(np.zeros(SR, np.float32), SR) is None
    assert loudness_lufs(x[:1000], SR) is None  # shorter than one 0.4 s block


@pytest.mark.parametrize(
    "name",
    ["asr/jfk.flac", "conversation/pyannote_sample.wav", "overlap/fw_stereo_diarization.wav"],
)
def test_loudness_matches_torchaudio_bs1770_on_real_speech(name, realdata):
    """Our scipy K-weighting and gating give torchaudio's BS.1770 figure (mono and stereo)."""
    import torch
    import torchaudio.functional as AF

    x, sr = sf.read(realdata / name, dtype="float32", always_2d=True)
    for sig in (x.T, x.T[:1]):
        ref = float(AF.loudness(torch.from_numpy(np.ascontiguousarray(sig)), sr))
        assert loudness_lufs(sig, sr) == pytest.approx(ref, abs=0.01)
    at8k = loudness_lufs(x.T[0, :: sr // 8000], 8000)  # decimated: speech energy is below 4 kHz
    assert at8k == pytest.approx(loudness_lufs(x.T[0], sr), abs=1.0)


def test_snr_tracks_added_noise():
    rng = np.random.default_rng(2)
    speech = [(1.0, 3.0), (4.0, 6.0)]
    clean = np.zeros(7 * SR)
    for s, e in speech:
        clean[int(s * SR) : int(e * SR)] = _harmonic(150, e - s)
    p_sig = np.mean(_harmonic(150, 1.0) ** 2)
    for target in (10.0, 20.0, 30.0):
        noise = rng.standard_normal(clean.size) * math.sqrt(p_sig / 10 ** (target / 10))
        assert snr_db(clean + noise, SR, speech) == pytest.approx(target, abs=1.5)
    assert snr_db(clean, SR, []) is None
    assert snr_db(clean[: SR // 2], SR, [(0.0, 0.5)]) is None  # no non-speech to measure noise


# ---------------------------------------------------------------------------------- pitch


@pytest.mark.parametrize("f0", [85.0, 140.0, 220.0, 330.0])
def test_pitch_of_harmonic_tone(f0):
    x = _harmonic(f0) + np.random.default_rng(3).standard_normal(2 * SR) * 0.01
    stats = pitch_stats(x, SR, [(0.2, 1.8)])
    assert stats["pitch_mean_hz"] == pytest.approx(f0, rel=0.01)
    assert stats["pitch_std_hz"] < 2.0
    assert stats["pitch_min_hz"] <= stats["pitch_mean_hz"] <= stats["pitch_max_hz"]


def test_pitch_undefined_without_voicing():
    noise = np.random.default_rng(4).standard_normal(2 * SR) * 0.1
    assert pitch_stats(noise, SR, None)["pitch_mean_hz"] is None
    assert pitch_stats(_harmonic(150), SR, [])["pitch_mean_hz"] is None
    # only frames inside the speech intervals count
    x = np.concatenate([_harmonic(100, 1.0), _harmonic(250, 1.0)])
    assert pitch_stats(x, SR, [(1.1, 1.9)])["pitch_mean_hz"] == pytest.approx(250, rel=0.01)


def test_pitch_on_real_male_speech(realdata):
    path = realdata / "asr" / "librivox_ss01_0870.wav"
    x, sr = sf.read(path, dtype="float32")
    stats = pitch_stats(x, sr, None)
    # a male reader: mean well inside the male range, spread of natural intonation
    assert 80 < stats["pitch_mean_hz"] < 160
    assert 3 < stats["pitch_std_hz"] < 40


def test_whole_call_measures_in_pieces_equal_one_pass():
    """Frame power, RMS and loudness go through long calls piece by piece (memory); each must
    give what one float64 pass over the whole signal gives, bit for bit."""
    from scipy.signal import sosfilt

    from callqa.audio.signal_stats import (
        CHUNK,
        _k_weighted_squares,
        _k_weighting,
        cumsum_at,
        frame_power,
        rms_dbfs,
    )

    rng = np.random.default_rng(0)
    x = (0.05 * rng.standard_normal(2 * CHUNK + 12_345)).astype(np.float32)
    x[CHUNK // 2 : CHUNK + 999] = 0.0  # digital silence across a piece boundary
    x64 = x.astype(np.float64)
    frames = x64[: x.size // 320 * 320].reshape(-1, 320)
    assert np.array_equal(frame_power(x, 320), np.mean(frames * frames, axis=1))
    assert rms_dbfs(x) == 10 * math.log10(float(np.mean(x64 * x64)))

    two = np.stack([x, x[::-1]])
    tone = np.where(np.arange(x.size) % 2 == 0, 1e-12, -1e-12)
    y = sosfilt(_k_weighting(SR), two.astype(np.float64) + tone, axis=-1)
    idx = np.array([x.size, 0, 5, 70_000, CHUNK, CHUNK + 1, 123_456])
    got = cumsum_at(_k_weighted_squares(two, SR, chunk=70_000), idx)
    assert np.array_equal(got, np.c_[np.zeros(2), np.cumsum(y * y, axis=-1)][:, idx])


def test_clipping_run_across_a_piece_boundary(monkeypatch):
    import callqa.audio.signal_stats as ss

    monkeypatch.setattr(ss, "CHUNK", 100)
    x = np.zeros(1000, np.float32)
    x[98:101] = 1.0  # one run of 3 over the boundary at 100
    x[300:302] = -1.0  # too short
    assert clipped_share(x, "PCM_16") == pytest.approx(3 / 1000)
