"""callqa.asr.diarize on real speech: GE2E diarization of mono calls.

Real recordings (the `realdata` fixture) and the real resemblyzer encoder; no mocks. Accuracy
bounds are the figures measured by benchmarks/bench_roles.py minus a margin.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from callqa.asr.diarize import DiarizeOptions, diarize
from callqa.asr.roles import frame_accuracy
from callqa.audio.io import load_audio, resample, to_mono
from callqa.audio.vad import detect_speech

SR = 16000


def _load16k(path: Path) -> np.ndarray:
    audio = load_audio(path)
    return resample(to_mono(audio.samples), audio.sample_rate_hz, SR)


def _rttm(path: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in path.read_text().splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            turns.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


def _two_channel_call(
    first: list[np.ndarray], second: list[np.ndarray], order: str, pause_s: float = 0.4
) -> np.ndarray:
    """(2, n) call: `first` speaker's clips on channel 0, `second` on 1, turns as in `order`."""
    clips = {"a": iter(first), "b": iter(second)}
    placed, cursor = [], int(0.3 * SR)
    for who in order:
        clip = next(clips[who])
        placed.append((0 if who == "a" else 1, cursor, clip))
        cursor += clip.size + int(pause_s * SR)
    out = np.zeros((2, cursor), dtype=np.float32)
    for ch, start, clip in placed:
        out[ch, start : start + clip.size] = clip
    return out


def _check_turns(turns, speech) -> None:
    """Turns are ordered, do not overlap, lie inside the speech and cover all of it."""
    assert all(s < e for s, e, _ in turns)
    assert all(a[1] <= b[0] + 1e-9 for a, b in zip(turns, turns[1:], strict=False))
    covered = sum(e - s for s, e, _ in turns)
    assert covered == pytest.approx(sum(e - s for s, e in speech), abs=1e-6)
    for s, e, _ in turns:
        assert any(ss - 1e-6 <= s and e <= se + 1e-6 for ss, se in speech)


@pytest.fixture(scope="module")
def conversation(realdata):
    base = realdata / "conversation" / "pyannote_sample"
    return _load16k(base.with_suffix(".wav")), _rttm(base.with_suffix(".rttm"))


@pytest.fixture(scope="module")
def librivox(realdata):
    return [_load16k(realdata / "asr" / f"librivox_ss01_08{n}0.wav") for n in (7, 8, 9)]


def test_conversation_frame_accuracy(conversation):
    x, rttm = conversation
    speech = detect_speech(x, SR)
    turns = diarize(x, speech)
    _check_turns(turns, speech)
    assert {spk for _, _, spk in turns} == {0, 1}
    assert turns[0][2] == 0  # speakers are numbered in order of appearance
    accuracy, labelled = frame_accuracy(rttm, turns)
    # Measured 0.900 (two similar voices on one phone line, 0.4-1 s back-and-forth turns).
    assert accuracy >= 0.85
    assert labelled >= 0.95


def test_conversation_through_telephone_codec(conversation):
    """8 kHz mu-law (a real codec round trip via soundfile), upsampled back to 16 kHz."""
    import soundfile as sf

    x, rttm = conversation
    buf = io.BytesIO()
    sf.write(buf, resample(x, SR, 8000), 8000, subtype="ULAW", format="WAV")
    buf.seek(0)
    narrow, rate = sf.read(buf, dtype="float32")
    y = resample(narrow, rate, SR)
    turns = diarize(y, detect_speech(y, SR))
    assert frame_accuracy(rttm, turns)[0] >= 0.85  # measured 0.900


def test_alternating_mix_of_two_real_speakers(realdata, librivox):
    """LibriVox reader and JFK taking turns; the reference is each channel's own VAD."""
    jfk = _load16k(realdata / "asr" / "jfk.flac")
    pieces = [jfk[int(s * SR) : int(e * SR)] for s, e in detect_speech(jfk, SR)]
    stereo = _two_channel_call(librivox, pieces[:3], order="ababab")
    reference = [(s, e, ch) for ch in (0, 1) for s, e in detect_speech(stereo[ch], SR)]
    mono = stereo.mean(axis=0)
    speech = detect_speech(mono, SR)
    turns = diarize(mono, speech)
    _check_turns(turns, speech)
    assert frame_accuracy(reference, turns)[0] >= 0.95  # measured 0.99-1.00
    assert turns[0][2] == 0 and turns[0][0] < 1.0  # the reader speaks first


def test_one_speaker_dominates(realdata, librivox):
    """Three long LibriVox turns and one 0.9 s reply from another voice (6% of the speech)."""
    reply = _load16k(realdata / "asr" / "ps_cards_001.wav")
    stereo = _two_channel_call(librivox, [reply], order="aaba")
    reference = [(s, e, ch) for ch in (0, 1) for s, e in detect_speech(stereo[ch], SR)]
    mono = stereo.mean(axis=0)
    turns = diarize(mono, detect_speech(mono, SR))
    assert len({spk for _, _, spk in turns}) == 2
    assert frame_accuracy(reference, turns)[0] >= 0.95  # measured 0.998


def test_short_single_speaker_call_is_one_speaker(librivox):
    x = librivox[1]  # 3 s, one reader
    speech = detect_speech(x, SR)
    turns = diarize(x, speech)
    assert {spk for _, _, spk in turns} == {0}
    _check_turns(turns, speech)


def test_degenerate_inputs(conversation):
    x, _ = conversation
    assert diarize(x, []) == []
    assert diarize(np.zeros(SR, np.float32), [(0.0, 1.0)]) == [(0.0, 1.0, 0)]
    one = diarize(x, [(7.6, 12.0), (14.5, 17.9)], n_speakers=1)
    assert one == [(7.6, 12.0, 0), (14.5, 17.9, 0)]
    # Speech past the end of the signal is clipped; overlapping intervals are merged.
    clipped = diarize(x[: 2 * SR], [(0.5, 1.5), (1.0, 5.0)])
    assert clipped == [(0.5, 2.0, 0)]
    with pytest.raises(ValueError, match="mono"):
        diarize(np.stack([x, x]), [(0.0, 1.0)])
    with pytest.raises(ValueError, match="unknown clustering"):
        diarize(x, detect_speech(x, SR), options=DiarizeOptions(clusterings=("kmedoids",)))


def test_mel_front_end_in_pieces_equals_whole_call(monkeypatch):
    """The speaker embeddings' mel spectrogram and frame powers are computed piece by piece on
    long calls (memory): the same values as librosa on the whole call, ends included."""
    import librosa

    from callqa.asr import speakers

    rng = np.random.default_rng(0)
    x = (0.05 * rng.standard_normal(16000 * 40 + 123)).astype(np.float32)
    x[16000:48000] = 0.0
    whole = librosa.feature.melspectrogram(
        y=x, sr=16000, n_fft=speakers.MEL_WIN, hop_length=speakers.MEL_HOP, n_mels=40
    ).T
    pieces = speakers.mel_spectrogram(x, chunk_frames=1000)
    assert pieces.shape == whole.shape and np.array_equal(pieces, whole)

    monkeypatch.setattr(speakers, "CHUNK", 50_000)  # samples per piece of the running sum
    padded = np.pad(x.astype(np.float64), speakers.MEL_WIN // 2)
    csum = np.r_[0.0, np.cumsum(padded**2)]
    starts = np.arange(len(whole)) * speakers.MEL_HOP
    ends = np.minimum(starts + speakers.MEL_WIN, padded.size)
    expected = (csum[ends] - csum[starts]) / speakers.MEL_WIN
    assert np.array_equal(speakers.frame_power(x, len(whole)), expected)
