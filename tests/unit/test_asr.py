"""ASR backends on real speech: word times in absolute track seconds, speech only, text right.

Both backends run the bundled tiny.en (the transformers one on its conversion, made here in a
temp dir), with Silero VAD intervals from `callqa.audio.vad.detect_speech`.
"""

import numpy as np
import pytest

from callqa.asr.backend import clean_words, compression_ratio, is_hallucination, make_segment
from callqa.asr.packing import MAX_WINDOW_S, pack_speech, speech_pieces
from callqa.asr.transcribe import load_backend
from callqa.config import TranscribeConfig, VadConfig
from callqa.schemas import Word

SR = 16000
JFK_REFERENCE = (
    "and so my fellow americans ask not what your country can do for you "
    "ask what you can do for your country"
)


def _load_16k(path) -> np.ndarray:
    from callqa.audio.io import load_audio, resample, to_mono

    audio = load_audio(path)
    return resample(to_mono(audio.samples), audio.sample_rate_hz, SR)


def _speech(x: np.ndarray) -> list[tuple[float, float]]:
    from callqa.audio.vad import detect_speech

    return detect_speech(x, SR, VadConfig())


def _words(segments) -> list[Word]:
    return [w for s in segments for w in s.words]


def _wer(reference: str, hypothesis: str) -> float:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    return jiwer.wer(norm(reference), norm(hypothesis))


@pytest.fixture(scope="module")
def jfk(realdata) -> np.ndarray:
    return _load_16k(realdata / "asr" / "jfk.flac")


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    from callqa.asr.convert import bundled_ct2_dir, convert_whisper

    return convert_whisper(bundled_ct2_dir(), tmp_path_factory.mktemp("asr") / "tiny.en-hf")


@pytest.fixture(scope="module", params=["faster-whisper", "transformers"])
def backend(request, hf_dir):
    model = "bundled" if request.param == "faster-whisper" else str(hf_dir)
    # One thread: the test box shares 2 cores between parallel jobs, where a 2-thread torch
    # decoder waits on descheduled threads (seen 5x slower). Results do not depend on it.
    return load_backend(TranscribeConfig(backend=request.param, model=model, cpu_threads=1))


@pytest.fixture(scope="module")
def jfk_result(backend, jfk):
    speech = _speech(jfk)
    return speech, backend.transcribe(jfk, speech)


# --- both backends on real speech -------------------------------------------------------


def test_transcribes_real_speech(backend, jfk_result):
    _speech_iv, segments = jfk_result
    text = " ".join(s.text for s in segments)
    assert _wer(JFK_REFERENCE, text) < 0.15, text
    assert backend.name in ("faster-whisper", "transformers")
    assert backend.model_id and backend.model_id != "bundled"
    for s in segments:
        assert s.text == s.text.strip() and s.words
        assert s.start == s.words[0].start and s.end == s.words[-1].end
        assert s.no_speech_prob is not None and 0 <= s.no_speech_prob <= 1
        assert s.avg_logprob is not None and s.avg_logprob <= 0


def test_word_times_are_absolute_monotonic_and_inside_speech(jfk, jfk_result):
    speech, segments = jfk_result
    words = _words(segments)
    assert len(words) >= 18
    pieces = speech_pieces(jfk, speech)
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    for w in words:
        assert w.word == w.word.strip() and w.word
        assert w.end >= w.start
        assert any(lo <= w.start and w.end <= hi for lo, hi in pieces), (w, pieces)
        assert w.probability is not None and 0 <= w.probability <= 1
    # The words cover the speech: first near the first onset, last near the last offset.
    assert abs(words[0].start - speech[0][0]) < 0.6
    assert abs(words[-1].end - speech[-1][1]) < 1.0
    # "country" ends both sentences: the second must come ~3 s after the first.
    country = [w.start for w in words if w.word.lower().strip(".,") == "country"]
    assert len(country) == 2 and 2.5 < country[1] - country[0] < 5.5


def test_silence_gives_no_segments(backend):
    rng = np.random.default_rng(0)
    silence = np.zeros(5 * SR, np.float32)
    hiss = (rng.normal(size=5 * SR) * 1e-3).astype(np.float32)
    for x in (silence, hiss):
        speech = _speech(x)
        assert speech == []
        assert backend.transcribe(x, speech) == []
    assert backend.transcribe(np.zeros(0, np.float32), []) == []


def test_speech_late_in_the_track_keeps_absolute_times(backend, jfk, jfk_result):
    offset_s = 5.0
    padded = np.concatenate([np.zeros(int(offset_s * SR), np.float32), jfk])
    speech = _speech(padded)
    assert speech[0][0] > offset_s
    late = _words(backend.transcribe(padded, speech))
    early = _words(jfk_result[1])
    assert len(late) == len(early)
    assert late[0].start >= offset_s
    shifts = np.array([b.start - a.start for a, b in zip(early, late, strict=True)])
    assert abs(np.median(shifts) - offset_s) < 0.1
    assert np.all(np.abs(shifts - offset_s) < 0.5)


def test_long_speech_is_split_not_truncated(backend, jfk, realdata):
    # One VAD interval of 41 s: faster-whisper would silently drop everything after 30 s.
    talk = _load_16k(realdata / "conversation" / "pyannote_sample.wav")
    x = np.concatenate([jfk, talk])
    duration_s = len(x) / SR
    windows = pack_speech([(x, [(0.0, duration_s)])]).windows
    assert len(windows) == 2 and all(e - s <= MAX_WINDOW_S for s, e in windows)
    words = _words(backend.transcribe(x, [(0.0, duration_s)]))
    text = " ".join(w.word for w in words)
    assert "country" in text.lower()
    assert words[-1].end > duration_s - 5
    assert sum(w.start > 30 for w in words) >= 5


def test_telephone_quality_speech(backend, jfk, tmp_path):
    """8 kHz mu-law, as call-center recordings come."""
    import soundfile as sf

    from callqa.audio.io import resample

    path = tmp_path / "jfk_phone.wav"
    sf.write(path, resample(jfk, SR, 8000), 8000, subtype="ULAW")
    x = _load_16k(path)
    text = " ".join(s.text for s in backend.transcribe(x, _speech(x)))
    assert _wer(JFK_REFERENCE, text) < 0.25, text


# --- windows and filters (no model) -----------------------------------------------------


def test_pieces_pad_join_short_pauses_and_never_overlap():
    x = np.zeros(60 * SR, np.float32)
    pieces = speech_pieces(x, [(5.0, 6.0), (1.0, 2.0), (2.3, 2.9), (40.0, 41.0), (59.9, 60.5)])
    # A 0.4 s pause stays audio; longer silences separate pieces; padding stops at the track.
    assert pieces == [(0.8, 3.1), (4.8, 6.2), (39.8, 41.2), (59.7, 60.0)]
    assert speech_pieces(x, []) == []
    assert speech_pieces(x, [(3.0, 3.0), (70.0, 80.0)]) == []
    close = speech_pieces(x, [(1.0, 2.0), (2.2, 3.0)], join_gap_s=0.0)
    assert close == [(0.8, 2.1), (2.1, 3.2)]  # padding meets half-way


def test_packing_leaves_silence_out_and_maps_words_back():
    from callqa.schemas import Word

    x = np.zeros(200 * SR, np.float32)
    speech = [(float(s), float(s) + 2.0) for s in range(5, 195, 10)]  # 2 s every 10 s
    packed = pack_speech([(x, speech)])
    assert all(e - s <= MAX_WINDOW_S + 1e-9 for s, e in packed.windows)
    assert all(a[1] <= b[0] for a, b in zip(packed.windows, packed.windows[1:], strict=False))
    # 19 pieces of 2.4 s: 45.6 s of audio in two inputs instead of seven 30 s spans.
    assert len(packed.audio) / SR == pytest.approx(sum(p.duration_s for p in packed.pieces) + 0.05)
    assert len(packed.windows) == 2
    second = packed.pieces[1]  # track 14.8-17.2 s sits at 2.4-4.8 s of the packed audio
    assert second.start_s == pytest.approx(14.8) and second.at_s == pytest.approx(2.4)
    first = packed.windows[0]
    words = [Word(word="hi", start=2.5, end=2.9), Word(word="edge", start=4.6, end=5.1)]
    hi, edge = packed.to_track(words, first)
    assert (hi.start, hi.end) == (pytest.approx(14.9), pytest.approx(15.3))
    # "edge" straddles two pieces: it goes to the one holding its midpoint (the third)
    assert edge.start == pytest.approx(24.8) and edge.end == pytest.approx(25.1)
    assert packed.locate(first) == (0, (4.8, 117.2))


def test_two_tracks_share_a_batch_but_never_a_window():
    x = np.zeros(60 * SR, np.float32)
    packed = pack_speech([(x, [(1.0, 3.0)]), (x, []), (x, [(10.0, 12.0), (50.0, 51.0)])])
    assert len(packed.windows) == 2  # 2.4 s of track 0; 3.8 s of track 2; nothing of track 1
    assert packed.locate(packed.windows[0]) == (0, (0.8, 3.2))
    assert packed.locate(packed.windows[1]) == (2, (9.8, 51.2))


def test_a_long_interval_is_cut_in_its_quietest_moment():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=70 * SR) * 0.1).astype(np.float32)
    x[int(27.0 * SR) : int(27.3 * SR)] *= 0.01  # a breath pause at 27.0-27.3 s
    pieces = speech_pieces(x, [(0.0, 70.0)])
    assert len(pieces) == 3
    assert 27.0 <= pieces[0][1] <= 27.3
    assert pieces[0][1] == pieces[1][0]
    assert pieces[-1][1] == 70.0


def test_hallucination_rule_needs_both_conditions():
    cfg = TranscribeConfig(max_no_speech_prob=0.6, min_avg_logprob=-1.0)
    assert is_hallucination(-1.5, 0.9, cfg)
    assert not is_hallucination(-0.2, 0.9, cfg)  # confident text over a quiet start
    assert not is_hallucination(-1.5, 0.1, cfg)  # hard speech, but speech
    assert not is_hallucination(None, 0.9, cfg)


def test_repetition_loops_compress_well():
    assert compression_ratio(". " * 100) > 2.4
    assert compression_ratio("the the " * 30) > 2.4
    assert compression_ratio(JFK_REFERENCE) < 2.4
    assert compression_ratio("") == 0.0


def test_words_outside_speech_are_dropped():
    cfg = TranscribeConfig()
    words = [
        Word(word="Hello", start=1.0, end=1.4),
        Word(word="you", start=12.0, end=12.3),  # invented in a 10 s pause
        Word(word="there.", start=20.1, end=20.5),
    ]
    seg = make_segment(
        words, "Hello you there.", (0.8, 21.0), -0.2, 0.01, cfg, [(1.0, 2.0), (20.0, 21.0)]
    )
    assert seg.text == "Hello there." and [w.word for w in seg.words] == ["Hello", "there."]
    assert make_segment(words[1:2], "you", (0.8, 21.0), -0.2, 0.01, cfg, [(1.0, 2.0)]) is None


def test_clean_words_strips_clamps_and_orders():
    raw = [
        Word(word=" Hello", start=0.9, end=1.4, probability=0.9),
        Word(word=" ", start=1.4, end=1.5, probability=0.1),
        Word(word=" there.", start=1.2, end=9.0, probability=0.8),
    ]
    words = clean_words(raw, (1.0, 3.0))
    assert [w.word for w in words] == ["Hello", "there."]
    assert [(w.start, w.end) for w in words] == [(1.0, 1.4), (1.2, 3.0)]


# --- model resolution --------------------------------------------------------------------


def test_transformers_bundled_needs_the_conversion(tmp_path, monkeypatch):
    from callqa.asr.transformers_whisper import resolve_model

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="callqa models convert-whisper"):
        resolve_model("bundled")
    assert resolve_model("openai/whisper-tiny.en") == "openai/whisper-tiny.en"


def test_faster_whisper_resolves_bundled_and_devices():
    from pathlib import Path

    from callqa.asr.faster_whisper import resolve_device, resolve_model

    path = resolve_model("bundled")
    assert isinstance(path, str) and (Path(path) / "model.bin").exists()
    assert resolve_model("tiny.en") == "tiny.en"
    assert resolve_device("cpu", "auto") == ("cpu", "int8")
    assert resolve_device("cuda", "auto") == ("cuda", "float16")
    assert resolve_device("cpu", "float32") == ("cpu", "float32")


def test_packed_windows_never_add_up_to_more_than_the_audio():
    """faster-whisper asserts this (seen: a 1 ms rounding overshoot failed a real call)."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(20, 90) * SR) + int(rng.integers(0, SR))
        starts = np.sort(rng.uniform(0, n / SR, size=int(rng.integers(1, 30))))
        speech = [(float(s), float(min(s + rng.uniform(0.2, 8), n / SR))) for s in starts]
        packed = pack_speech([(np.zeros(n, np.float32), speech)])
        assert sum(e - s for s, e in packed.windows) < len(packed.audio) / SR
        assert packed.windows[-1][1] <= len(packed.audio) / SR


def _seg(*words: tuple[str, float, float]):
    from callqa.asr.backend import AsrSegment
    from callqa.schemas import Word

    ws = [Word(word=w, start=s, end=e, probability=0.9) for w, s, e in words]
    return AsrSegment(ws[0].start, ws[-1].end, " ".join(w for w, _, _ in words), ws, -0.3, 0.1)


def test_speech_that_came_back_without_words_is_found_and_replaced():
    from callqa.asr.backend import _merge_passes, missed_speech

    speech = [(0.5, 4.5), (6.0, 15.0), (16.0, 16.5)]
    # Whisper skipped most of a dense input: 3 words stretched over the 9 s turn.
    first = [
        _seg(("hello", 0.6, 1.0), ("thanks", 1.1, 1.5), ("for", 1.5, 1.7), ("calling", 1.7, 2.2),
             ("how", 2.4, 2.7), ("can", 2.7, 2.9), ("i", 2.9, 3.0), ("help", 3.0, 3.6)),
        _seg(("okay", 6.1, 9.0), ("let", 9.0, 12.0), ("me", 12.0, 14.9)),
    ]  # fmt: skip
    gaps = missed_speech(speech, first)
    assert gaps == [(6.0, 15.0)]  # the 0.5 s interval is too short to judge
    words = [(w, 6.2 + 0.4 * i, 6.5 + 0.4 * i) for i, w in enumerate("wait let me jump in here "
             "because i can see the cause already alright".split())]  # fmt: skip
    merged = _merge_passes(first, [_seg(*words)], gaps)
    texts = [s.text for s in merged]
    assert texts == ["hello thanks for calling how can i help", " ".join(w for w, _, _ in words)]
    # A second pass that finds less keeps the first pass's words.
    assert _merge_passes(first, [_seg(("uh", 7.0, 7.2))], gaps) == first


def test_a_decoding_loop_is_cut_and_what_came_before_is_kept():
    from callqa.asr.backend import loop_start, make_segment
    from callqa.schemas import Word

    def words(text: str) -> list[Word]:
        return [Word(word=t, start=i * 0.3, end=i * 0.3 + 0.25) for i, t in enumerate(text.split())]

    looped = "Right, I've had enough of this, honestly. My " + "full " * 40
    seg = make_segment(words(looped), looped, (0.0, 30.0), -0.3, 0.1, TranscribeConfig())
    assert seg is not None and seg.text == "Right, I've had enough of this, honestly. My full"
    assert seg.end < 3.0
    # Nothing worth keeping before the loop: the segment goes.
    only_loop = "hey " * 30
    assert (
        make_segment(words(only_loop), only_loop, (0.0, 30.0), -0.3, 0.1, TranscribeConfig())
        is None
    )
    # Ordinary speech with a word said three times is not a loop unless the text compresses.
    normal = "no no no that is not what I ordered at all I wanted the blue one"
    assert (
        make_segment(words(normal), normal, (0.0, 30.0), -0.3, 0.1, TranscribeConfig()).text
        == normal
    )
    assert loop_start(words("a b c d")) == 4
    assert loop_start(words("so thank you thank you thank you thank you")) == 3
