"""Call metrics on hand-built activity, and signal measurements on synthetic and real audio."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import soundfile as sf

from callqa.audio.metrics import (
    call_metrics,
    clipped_share,
    loudness_lufs,
    merge_intervals,
    metric_unit,
    mutual_silence,
    overtalk,
    pitch_stats,
    response_latencies,
    snr_db,
    speech_rate_wpm,
)
from callqa.schemas import Word

SR = 16000


def _words(n: int, start: float = 0.0) -> list[Word]:
    return [
        Word(word=f" w{i}", start=start + i * 0.1, end=start + i * 0.1 + 0.05) for i in range(n)
    ]


def _roundtrip(x: np.ndarray, sr: int, subtype: str, fmt: str = "WAV") -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, x, sr, subtype=subtype, format=fmt)
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    return y


def _harmonic(f0: float, seconds: float = 2.0, sr: int = SR, amp: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return amp * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))


# ---------------------------------------------------------------------------------- activity


def test_existing_helpers_keep_their_behaviour():
    assert merge_intervals([(3, 4), (0, 1), (0.5, 2)]) == [(0, 2), (3, 4)]
    assert merge_intervals([(0, 1), (1.2, 2)], gap_s=0.3) == [(0, 2)]
    assert mutual_silence({"agent": [(0, 1), (8, 9)], "customer": [(2, 3)]}) == [(1, 2), (3, 8)]
    assert overtalk({"agent": [(2, 5)], "customer": [(0, 3)]}) == [
        {"start": 2, "end": 3, "by": "agent", "over": "customer"}
    ]
    assert speech_rate_wpm(10, [(0, 2), (3, 5)]) == 150.0
    assert speech_rate_wpm(10, []) is None


ACTIVITY = {
    # agent talks over the customer at 9.5-11.0 (1.5 s, agent started later);
    # the customer talks over the agent at 1.5-2.0 (0.5 s)
    "agent": [(0.0, 2.0), (3.0, 5.0), (9.5, 12.0)],
    "customer": [(1.5, 2.5), (5.8, 6.4), (8.0, 11.0), (13.0, 14.0)],
}


def test_mutual_silence_and_overtalk_attribution():
    m = call_metrics(ACTIVITY, None, 15.0, None, None, mono=False)
    call = m["call"]
    gaps = [(g["start"], g["end"]) for g in call["mutual_silence"]]
    assert gaps == [(2.5, 3.0), (5.0, 5.8), (6.4, 8.0), (12.0, 13.0)]
    assert call["longest_mutual_silence_s"] == 1.6
    assert call["mutual_silence_s"] == pytest.approx(0.5 + 0.8 + 1.6 + 1.0)
    assert call["talk_s"] == pytest.approx(14.0 - 3.9)
    ev = [(e["start"], e["end"], e["by"], e["over"]) for e in call["overtalk"]]
    assert ev == [(1.5, 2.0, "customer", "agent"), (9.5, 11.0, "agent", "customer")]
    assert call["overtalk_s"] == pytest.approx(2.0)
    assert m["agent"]["longest_overtalk_s"] == 1.5
    assert m["customer"]["longest_overtalk_s"] == 0.5
    assert m["agent"]["overtalk_s"] == 1.5
    assert m["agent"]["talk_s"] == 6.5 and m["customer"]["talk_s"] == 5.6
    assert m["agent"]["talk_ratio"] + m["customer"]["talk_ratio"] == pytest.approx(1.0)


def test_response_latency_skips_own_pauses_and_interruptions():
    # customer answers the agent after 0.8 s (5.0 -> 5.8); its 8.0 start follows its own speech
    # (a pause in its turn, not a response); its 13.0 start answers the agent's 12.0 stop.
    assert response_latencies(ACTIVITY, "customer") == pytest.approx([0.8, 1.0])
    # agent: 3.0 answers the customer's 2.5 stop; 9.5 starts while the customer speaks.
    assert response_latencies(ACTIVITY, "agent") == pytest.approx([0.5])
    m = call_metrics(ACTIVITY, None, 15.0, None, None, mono=False)
    assert m["customer"]["response_latency_mean_s"] == pytest.approx(0.9)
    assert m["customer"]["response_latency_max_s"] == pytest.approx(1.0)
    assert m["agent"]["response_latency_max_s"] == pytest.approx(0.5)


def test_speech_rate_from_words_and_vad_time():
    words = {"agent": _words(26), "customer": _words(7) + [Word(word="  ", start=0, end=0)]}
    m = call_metrics(ACTIVITY, words, 15.0, None, None, mono=False)
    assert m["agent"]["n_words"] == 26
    assert m["agent"]["speech_rate_wpm"] == pytest.approx(60 * 26 / 6.5, abs=0.05)
    assert m["customer"]["n_words"] == 7  # blank ASR tokens are not words
    none = call_metrics(ACTIVITY, None, 15.0, None, None, mono=False)
    assert none["agent"]["n_words"] is None and none["agent"]["speech_rate_wpm"] is None


def test_mono_does_not_evaluate_overtalk_and_nothing_is_nan():
    m = call_metrics(ACTIVITY, {"agent": [], "customer": []}, 15.0, None, None, mono=True)
    assert m["call"]["overtalk"] == [] and m["call"]["overtalk_s"] is None
    assert m["call"]["overtalk_evaluated"] is False
    assert m["agent"]["longest_overtalk_s"] is None and m["customer"]["overtalk_s"] is None
    assert m["agent"]["speech_rate_wpm"] == 0.0
    empty = call_metrics({}, {}, 0.0, {}, {}, mono=False)
    assert empty["agent"]["talk_ratio"] is None and empty["call"]["longest_mutual_silence_s"] == 0
    for doc in (m, empty):
        json.dumps(doc, allow_nan=False)  # raises on NaN or infinity


def test_input_stats_and_pitch_flow_into_roles():
    stats = {
        "agent": {"loudness_lufs": -20.0, "clipped_share": 0.0, "snr_db": float("nan")},
        "customer": {"loudness_lufs": float("-inf"), "clipped_share": 0.02, "snr_db": 31.0},
    }
    tracks = {"agent": _harmonic(120, 15.0), "customer": _harmonic(210, 15.0)}
    m = call_metrics(ACTIVITY, None, 15.0, stats, tracks, mono=False)
    assert m["agent"]["loudness_lufs"] == -20.0 and m["agent"]["snr_db"] is None
    assert m["customer"]["loudness_lufs"] is None and m["customer"]["clipped_share"] == 0.02
    assert m["agent"]["pitch_mean_hz"] == pytest.approx(120, abs=1)
    assert m["customer"]["pitch_mean_hz"] == pytest.approx(210, abs=1)
    json.dumps(m, allow_nan=False)


def test_mono_roles_measured_on_their_own_turns():
    # one mixed track: a quiet low voice in 0-4 s, a loud high one in 5-9 s
    x = np.concatenate([_harmonic(110, 4.0, amp=0.02), np.zeros(SR), _harmonic(230, 4.0, amp=0.2)])
    speech = {"agent": [(0.0, 4.0)], "customer": [(5.0, 9.0)]}
    stats = {"mono": {"loudness_lufs": -25.0, "clipped_share": 0.001, "snr_db": 40.0}}
    m = call_metrics(speech, None, 9.0, stats, {"mono": x}, mono=True)
    assert m["agent"]["pitch_mean_hz"] == pytest.approx(110, abs=1)
    assert m["customer"]["pitch_mean_hz"] == pytest.approx(230, abs=1)
    # 20 dB of gain, give or take the K-weighting of the different spectra
    assert m["customer"]["loudness_lufs"] - m["agent"]["loudness_lufs"] == pytest.approx(
        20, abs=1.5
    )
    assert m["agent"]["snr_db"] == 40.0 and m["customer"]["clipped_share"] == 0.001


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


def test_metric_unit_from_the_key_suffix():
    assert metric_unit("speech_rate_wpm") == ("speech_rate", "wpm")
    assert metric_unit("loudness_lufs") == ("loudness", "LUFS")
    assert metric_unit("silence_dbfs") == ("silence", "dBFS")
    assert metric_unit("longest_overtalk_s") == ("longest_overtalk", "s")
    assert metric_unit("talk_ratio") == ("talk_ratio", "")
    assert metric_unit("s") == ("s", "")
