"""Silero VAD on real speech, silence and noise; overtalk on a real two-speaker stereo file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from callqa.audio.io import resample
from callqa.audio.metrics import overtalk, total_s
from callqa.audio.vad import detect_speech
from callqa.config import VadConfig

SR = 16000


def _read16k(path: Path) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return resample(x.T, sr, SR)


def test_finds_the_speech_in_jfk(realdata):
    x = _read16k(realdata / "asr" / "jfk.flac").mean(axis=0)
    speech = detect_speech(x, SR)
    # "And so my fellow Americans ... ask what you can do for your country": four phrases,
    # first word near 0.3 s, last speech reaching the end of the 11 s clip
    assert 3 <= len(speech) <= 6
    assert 0.1 < speech[0][0] < 0.6
    assert speech[-1][1] > 10.0
    assert 7.0 < total_s(speech) < 10.5
    assert all(e > s for s, e in speech)
    assert all(a[1] <= b[0] for a, b in zip(speech, speech[1:], strict=False))


def test_speech_at_8khz_and_padding_changes_nothing_outside(realdata):
    x = _read16k(realdata / "asr" / "librivox_ss01_0880.wav")[0]
    at16 = detect_speech(x, SR)
    at8 = detect_speech(resample(x, SR, 8000), 8000)
    assert at16 and at8
    assert abs(total_s(at16) - total_s(at8)) < 0.5
    padded = np.concatenate([np.zeros(2 * SR, np.float32), x, np.zeros(2 * SR, np.float32)])
    shifted = detect_speech(padded, SR)
    assert shifted[0][0] == pytest.approx(at16[0][0] + 2.0, abs=0.1)
    assert shifted[-1][1] < 2.0 + x.size / SR + 0.1


def test_nothing_in_silence_or_steady_noise():
    assert detect_speech(np.zeros(5 * SR, np.float32), SR) == []
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(5 * SR) * 0.003).astype(np.float32)
    assert detect_speech(hiss, SR) == []
    hum = (0.05 * np.sin(2 * np.pi * 50 * np.arange(5 * SR) / SR)).astype(np.float32)
    assert detect_speech(hum, SR) == []


def test_rejects_unsupported_rate():
    with pytest.raises(ValueError, match="8000 or 16000"):
        detect_speech(np.zeros(44100, np.float32), 44100)


def test_threshold_param_is_used(realdata):
    x = _read16k(realdata / "asr" / "ps_goforward.wav")[0]
    loose = total_s(detect_speech(x, SR, VadConfig(threshold=0.2)))
    strict = total_s(detect_speech(x, SR, VadConfig(threshold=0.9)))
    assert loose >= strict > 0


def test_overtalk_on_real_stereo_overlap(realdata):
    # one LibriSpeech speaker per channel; the right one speaks ~0.3-2.5 s over the left one
    x = _read16k(realdata / "overlap" / "fw_stereo_diarization.wav")
    activity = {"agent": detect_speech(x[0], SR), "customer": detect_speech(x[1], SR)}
    assert activity["agent"][0][0] < 0.5 and activity["agent"][-1][1] > 4.5
    assert len(activity["customer"]) == 1
    cs, ce = activity["customer"][0]
    assert cs == pytest.approx(0.3, abs=0.2) and ce == pytest.approx(2.5, abs=0.25)
    events = overtalk(activity)
    assert len(events) == 1
    ev = events[0]
    assert ev["by"] == "customer" and ev["over"] == "agent"  # the right channel started later
    assert ev["end"] - ev["start"] > 1.8


def _frame_mask(intervals, n_frames: int) -> np.ndarray:
    mask = np.zeros(n_frames, bool)
    for s, e in intervals:
        mask[int(s * 100) : int(e * 100)] = True
    return mask


def test_batched_pieces_agree_with_upstream_silero_on_a_long_call(realdata):
    """Pieces scored side by side (with warm-up) find what one sequential pass finds."""
    import torch
    from silero_vad import get_speech_timestamps

    from callqa.audio.vad import PIECE_S, _load_model, detect_speech_many

    x = _read16k(realdata / "conversation" / "pyannote_sample.wav")[0]
    jfk = _read16k(realdata / "asr" / "jfk.flac").mean(axis=0)
    tracks = [x, np.concatenate([jfk, np.zeros(SR, np.float32), jfk])]
    assert all(len(t) > 2 * PIECE_S * SR for t in tracks)  # several pieces per track
    cfg = VadConfig()
    ours = detect_speech_many(tracks, SR, cfg)
    for t, got in zip(tracks, ours, strict=True):
        stamps = get_speech_timestamps(
            torch.from_numpy(t),
            _load_model(),
            threshold=cfg.threshold,
            min_speech_duration_ms=cfg.min_speech_ms,
            min_silence_duration_ms=cfg.min_silence_ms,
            speech_pad_ms=cfg.speech_pad_ms,
        )
        ref = [(s["start"] / SR, s["end"] / SR) for s in stamps]
        n = int(len(t) / SR * 100) + 1
        agreement = (_frame_mask(got, n) == _frame_mask(ref, n)).mean()
        assert agreement > 0.99, (got, ref)
        assert abs(len(got) - len(ref)) <= 1
    # One track at a time gives the same as a shared batch.
    assert [detect_speech(t, SR, cfg) for t in tracks] == ours


def test_vad_leaves_torch_threads_alone():
    """`import silero_vad` sets torch to one thread for the whole process; the VAD undoes it
    (a fresh interpreter: this process may have imported silero_vad already)."""
    import subprocess
    import sys

    code = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(2)\n"
        "from callqa.audio.vad import detect_speech\n"
        "detect_speech(np.zeros(16000, np.float32), 16000)\n"
        "x = 0.1 * np.random.default_rng(0).standard_normal(32000)\n"
        "detect_speech(x.astype(np.float32), 16000)\n"
        "print(torch.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "2"
