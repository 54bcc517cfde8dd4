"""callqa.asr.roles on real speech: GE2E diarization of mono calls, agent identification.

Real recordings from ../shared/realdata, the real resemblyzer encoder and the real MiniLM
sentence encoder; no mocks. Accuracy bounds are the figures measured by
benchmarks/bench_roles.py minus a margin.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from callqa.asr.roles import (
    DiarizeOptions,
    assign_roles,
    diarize,
    frame_accuracy,
    pick_agent,
    turn_texts_from_words,
)
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


# --------------------------------------------------------------------------- agent identification

# Written for these tests; none is a copy of the default scorecard's examples.
AGENT_EXAMPLES = [
    "thank you for calling acme support, my name is sam, how can i help you today",
    "good morning, you've reached the billing team, this is alex speaking",
    "is there anything else i can help you with today",
    "thanks for calling, have a great day, goodbye",
]


@pytest.fixture(scope="module")
def agent_likeness():
    """The scorer the Scorer passes down, built from a scorecard with these examples."""
    from callqa.qa.scorecard import Scorecard
    from callqa.text.encoder import get_encoder

    check = {"id": "greeting", "type": "semantic", "role": "agent", "agent_marker": True}
    card = Scorecard.from_dict(
        {"checks": [{**check, "examples": AGENT_EXAMPLES, "threshold": 0.5}]}
    )
    return card.agent_likeness(get_encoder("bundled"))


def test_pick_agent_by_greeting_when_the_customer_speaks_first(agent_likeness):
    turns = {
        0: [(0.2, "Hello?"), (9.0, "Yes, my card was declined at the shop this morning.")],
        1: [
            (1.5, "Hi there, thanks for phoning Northwind Bank, Dana speaking. What can I do?"),
            (14.0, "I can see the block, I've removed it now."),
            (30.0, "Anything more I can do for you today? Thank you for calling, bye now."),
        ],
    }
    assert pick_agent(turns, agent_likeness) == 1


def test_pick_agent_falls_back_to_the_first_speaker(agent_likeness):
    turns = {
        1: [(0.5, "The weather is lovely at the lake this week."), (8.0, "We went fishing.")],
        0: [(3.0, "Did you catch anything big at all?"), (11.0, "Sounds like a great trip.")],
    }
    assert pick_agent(turns, agent_likeness) == 1
    assert pick_agent(turns, None) == 1
    assert pick_agent({3: [(2.0, "Hello?")]}, agent_likeness) == 3
    with pytest.raises(ValueError):
        pick_agent({}, agent_likeness)


def test_pick_agent_scores_each_speakers_sentences_with_the_callable():
    turns = {
        0: [(0.0, "Good morning, how are you doing today?")],
        1: [(2.0, "I am calling about my broken router. It stopped working.")],
    }
    seen = []

    def likeness(sentences: list[str]) -> float:
        seen.append(sentences)
        return 0.9 if any("router" in s for s in sentences) else 0.1

    assert pick_agent(turns, likeness) == 1
    # Lower-cased sentences without punctuation, one list per speaker.
    assert sorted(seen) == [
        ["good morning how are you doing today"],
        ["i am calling about my broken router", "it stopped working"],
    ]
    # A margin under min_margin keeps the first speaker.
    assert pick_agent(turns, lambda ss: 0.5 + 0.01 * ("router" in " ".join(ss))) == 0


def test_assign_roles_and_role_accuracy():
    turns = [(0.0, 2.0, 0), (2.5, 4.0, 1), (4.0, 6.0, 0)]
    roles = assign_roles(turns, agent_speaker=1)
    assert [r for _, _, r in roles] == ["customer", "agent", "customer"]
    reference = [(0.0, 2.0, "customer"), (2.5, 4.0, "agent"), (4.0, 6.0, "customer")]
    assert frame_accuracy(reference, roles, best_mapping=False)[0] == pytest.approx(1.0)
    swapped = assign_roles(turns, agent_speaker=0)
    assert frame_accuracy(reference, swapped, best_mapping=False)[0] == pytest.approx(0.0)
    # Speaker numbers are arbitrary: the best mapping makes the swap irrelevant.
    assert frame_accuracy(reference, swapped)[0] == pytest.approx(1.0)


def test_frame_accuracy_counts_missed_speech_and_skips_overlap():
    reference = [(0.0, 1.0, "a"), (1.0, 2.0, "b"), (1.5, 3.0, "a")]
    # Scored frames: 0-1.5 s and 2-3 s (1.5-2 s has two speakers). 0-1 right, 1-1.5 right,
    # 2-3 unlabelled (missed) -> 1.5 of 2.5 s.
    accuracy, labelled = frame_accuracy(reference, [(0.0, 1.0, 7), (1.0, 2.0, 9)])
    assert accuracy == pytest.approx(0.6, abs=0.01)
    assert labelled == pytest.approx(0.6, abs=0.01)


def test_turn_texts_from_words():
    turns = [(0.0, 2.0, 0), (2.0, 5.0, 1), (6.0, 8.0, 0)]
    words = [(0.1, 0.5, " hello"), (1.8, 2.3, " there"), (2.4, 2.9, " hi"), (5.2, 5.6, " yes")]
    assert turn_texts_from_words(turns, words) == {0: [(0.0, "hello")], 1: [(2.0, "there hi yes")]}
