"""Transcribe stage core: cached ASR, role attribution for stereo and mono calls."""

import numpy as np
import pytest

from callqa.asr.transcribe import CachedAsr, _split_on_pauses, load_backend, transcribe_prepared
from callqa.audio.io import load_audio
from callqa.audio.prepare import prepare
from callqa.config import PreprocessConfig, TranscribeConfig
from callqa.schemas import Word


@pytest.fixture(scope="module")
def asr(tmp_path_factory):
    cfg = TranscribeConfig()
    return CachedAsr(load_backend(cfg), cfg, root=tmp_path_factory.mktemp("asr-cache"))


def test_split_on_pauses_cuts_long_runs_into_utterances():
    words = [Word(word=w, start=s, end=s + 0.3) for w, s in [("a", 0), ("b", 0.5), ("c", 3.0)]]
    segs = _split_on_pauses("agent", words)
    assert [(s.start, s.end, s.text) for s in segs] == [(0, 0.8, "a b"), (3.0, 3.3, "c")]
    assert _split_on_pauses("agent", []) == []


def test_cache_returns_the_same_words_and_survives_corruption(asr, realdata):
    audio = load_audio(realdata / "asr" / "jfk.flac")
    prep = prepare(audio, PreprocessConfig())
    (track,) = prep.tracks.values()
    (speech,) = prep.speech.values()
    first = asr.transcribe(track, speech)
    hits = asr.hits
    again = asr.transcribe(track, speech)
    assert asr.hits == hits + 1 and again == first
    entry = asr.cache.file_path(asr.content(track, speech))
    entry.write_bytes(entry.read_bytes()[:-10])  # truncated
    assert asr.transcribe(track, speech) == first  # recomputed, not crashed
    assert "country" in " ".join(s.text for s in first).lower()


def test_stereo_call_roles_come_from_channels(asr, realdata):
    audio = load_audio(realdata / "overlap" / "fw_stereo_diarization.wav")
    tr = transcribe_prepared(prepare(audio, PreprocessConfig()), asr)
    assert tr.roles_from == "channels"
    roles = {s.role for s in tr.segments}
    assert roles == {"agent", "customer"}
    customer = " ".join(s.text for s in tr.segments if s.role == "customer").lower()
    assert "horizon" in customer
    starts = [s.start for s in tr.segments]
    assert starts == sorted(starts)


@pytest.fixture(scope="module")
def mono_call(realdata):
    """pyannote's sample: Sheila (Texas) speaks first, then Diane (New Jersey)."""
    prep = prepare(
        load_audio(realdata / "conversation" / "pyannote_sample.wav"), PreprocessConfig()
    )
    assert prep.roles_from == "diarization"
    return prep


def _likeness(examples: list[str]):
    """The scorer the Scorer builds: scorecard agent examples + the real sentence encoder."""
    from callqa.qa.scorecard import Scorecard
    from callqa.text.encoder import get_encoder

    check = {"id": "greeting", "type": "semantic", "agent_marker": True, "threshold": 0.5}
    card = Scorecard.from_dict({"checks": [{**check, "examples": examples}]})
    return card.agent_likeness(get_encoder("bundled"))


def _role_saying(tr, word: str) -> str:
    (role,) = {s.role for s in tr.segments if word in s.text.lower()}
    return role


def test_mono_call_is_diarized_into_two_roles(asr, mono_call):
    tr = transcribe_prepared(mono_call, asr, _likeness(["thanks for calling"]), 2)
    assert tr.roles_from == "diarization"
    assert {s.role for s in tr.segments} == {"agent", "customer"}
    # Each role's activity is where that role's audio is non-zero, and the two never overlap.
    a, c = tr.tracks["agent"], tr.tracks["customer"]
    assert not np.any((a != 0) & (c != 0))
    for seg in tr.segments:
        mid = (seg.start + seg.end) / 2
        assert any(s <= mid + 1.0 and mid - 1.0 <= e for s, e in tr.speech[seg.role])


def test_mono_agent_is_the_speaker_the_passed_scorer_picks(asr, mono_call):
    # Measured: 0.84 for Diane's sentences vs 0.30 for Sheila's, and 0.85 vs 0.36 the other way.
    diane = transcribe_prepared(
        mono_call, asr, _likeness(["this is diane speaking from new jersey"])
    )
    assert _role_saying(diane, "diane") == "agent"
    assert _role_saying(diane, "sheila") == "customer"
    sheila = transcribe_prepared(
        mono_call, asr, _likeness(["folks down in texas call me a yankee"])
    )
    assert _role_saying(sheila, "sheila") == "agent"
    assert _role_saying(sheila, "diane") == "customer"
    # No scorer, or one that finds nobody agent-like: the first speaker (Sheila) is the agent.
    for likeness in (None, lambda sentences: 0.0):
        tr = transcribe_prepared(mono_call, asr, likeness)
        assert _role_saying(tr, "sheila") == "agent"


def test_score_finds_what_the_transcribe_stage_cached(asr, realdata, tmp_path):
    """A call prepared in memory (`callqa score`) and one read back from the preprocess stage's
    files (`callqa transcribe`) give the same cache keys, so ASR runs once per call."""
    from callqa.audio.preprocess import load_prepared, save_prepared

    audio = load_audio(realdata / "overlap" / "fw_stereo_diarization.wav")
    fresh = prepare(audio, PreprocessConfig())
    save_prepared(fresh, tmp_path / "call")
    stored = load_prepared(tmp_path / "call")
    for role in fresh.tracks:
        assert not np.any(np.signbit(fresh.tracks[role]) & (fresh.tracks[role] == 0))  # no -0.0
        assert asr.key(fresh.tracks[role], fresh.speech[role]) == asr.key(
            stored.tracks[role], stored.speech[role]
        )
