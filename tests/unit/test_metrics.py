"""Call metrics on hand-built activity: silence, overtalk, latency, rate, the metrics block."""

from __future__ import annotations

import json

import numpy as np
import pytest

from callqa.audio.metrics import (
    call_metrics,
    merge_intervals,
    metric_unit,
    mutual_silence,
    overtalk,
    response_latencies,
    speech_rate_wpm,
)
from callqa.schemas import Word

SR = 16000


def _words(n: int, start: float = 0.0) -> list[Word]:
    return [
        Word(word=f" w{i}", start=start + i * 0.1, end=start + i * 0.1 + 0.05) for i in range(n)
    ]


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


def test_metric_unit_from_the_key_suffix():
    assert metric_unit("speech_rate_wpm") == ("speech_rate", "wpm")
    assert metric_unit("loudness_lufs") == ("loudness", "LUFS")
    assert metric_unit("silence_dbfs") == ("silence", "dBFS")
    assert metric_unit("longest_overtalk_s") == ("longest_overtalk", "s")
    assert metric_unit("talk_ratio") == ("talk_ratio", "")
    assert metric_unit("s") == ("s", "")
