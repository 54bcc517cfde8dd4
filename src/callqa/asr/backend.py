"""ASR backend interface: one role's 16 kHz track + VAD speech -> segments with word timestamps.

The backends (faster_whisper.py, transformers_whisper.py) build on `PackedBackend`, and
`callqa.asr.transcribe.load_backend(cfg)` picks one, so imports point one way. Both transcribe
only speech, packed into Whisper inputs of at most 30 s (`callqa.asr.packing`), and return
results in absolute seconds of the track.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from callqa.asr.packing import MAX_WINDOW_S, WINDOW_PAD_S, Interval, PackedSpeech
from callqa.config import TranscribeConfig
from callqa.schemas import Word

logger = logging.getLogger(__name__)

# Second pass for speech Whisper skipped: VAD intervals of at least RETRY_MIN_S that came
# back with under RETRY_MIN_WPS words a second are decoded again in inputs of RETRY_WINDOW_S
# (conversational speech runs at 2-3 words a second).
RETRY_MIN_S = 1.0
RETRY_MIN_WPS = 1.2
RETRY_WINDOW_S = 10.0
# openai-whisper's compression_ratio_threshold: text that gzips this well is a decoding loop
# ("the the the ...", ". . . ."), not speech.
MAX_COMPRESSION_RATIO = 2.4
MIN_WORDS_BEFORE_LOOP = 3  # fewer words before a loop are not worth keeping


@dataclass
class AsrSegment:
    """One decoded stretch of a track; times are absolute seconds of that track."""

    start: float
    end: float
    text: str
    words: list[Word]
    avg_logprob: float | None
    no_speech_prob: float | None


class AsrBackend(Protocol):
    name: str  # "faster-whisper" | "transformers"
    model_id: str  # what was loaded (resolved path or hub id): cache key and results

    def transcribe_many(
        self, tracks: list[tuple[np.ndarray, list[Interval]]]
    ) -> list[list[AsrSegment]]:
        """Transcribe the speech intervals (seconds) of 16 kHz mono float32 tracks, decoded
        in shared batches (the two channels of a call); one segment list per track."""
        ...

    def transcribe(self, audio_16k: np.ndarray, speech: list[Interval]) -> list[AsrSegment]:
        """One track: `transcribe_many([(audio_16k, speech)])[0]`."""
        ...


class PackedBackend:
    """What both backends share: one track or several, decoded as packed speech
    (`_transcribe_packed`) with a second pass for speech that came back without words."""

    def transcribe(self, audio_16k: np.ndarray, speech: list[Interval]) -> list[AsrSegment]:
        """Transcribe only the speech of one track; times are absolute seconds of the track."""
        return self.transcribe_many([(audio_16k, speech)])[0]

    def transcribe_many(
        self, tracks: list[tuple[np.ndarray, list[Interval]]]
    ) -> list[list[AsrSegment]]:
        """Transcribe several tracks in shared batches (measured with faster-whisper: both
        channels of a call in one batch took 8.9 s where one track at a time took 11.4 s)."""
        tracks = [(check_track(x), speech) for x, speech in tracks]
        return transcribe_with_recovery(self._transcribe_packed, tracks)

    def _transcribe_packed(
        self, tracks: list[tuple[np.ndarray, list[Interval]]], max_window_s: float
    ) -> list[list[AsrSegment]]:
        raise NotImplementedError


def missed_speech(
    speech: list[Interval], segments: list[AsrSegment], min_s: float = RETRY_MIN_S
) -> list[Interval]:
    """VAD intervals (of at least `min_s`) that fewer than `RETRY_MIN_WPS` words a second
    overlap.

    Whisper sometimes skips most of a dense 30 s input and returns one short sentence (seen
    on a synthetic call: the greeting and 7 s of a 9 s turn came back as "okay, let me see",
    its word times stretched over the whole turn, so words are counted, not their durations).
    """
    words = [w for seg in segments for w in seg.words]
    missed = []
    for start, end in speech:
        if end - start < min_s:
            continue
        n_words = sum(1 for w in words if w.start < end and w.end > start)
        if n_words < RETRY_MIN_WPS * (end - start):
            missed.append((start, end))
    return missed


def transcribe_with_recovery(
    decode: Callable[[list[tuple[np.ndarray, list[Interval]]], float], list[list[AsrSegment]]],
    tracks: list[tuple[np.ndarray, list[Interval]]],
) -> list[list[AsrSegment]]:
    """`decode(tracks, max_window_s)` in 30 s inputs, then once more in short inputs for the
    speech that came back (nearly) without words. In each such stretch the pass that found
    more words wins."""
    out = decode(tracks, MAX_WINDOW_S)
    missed = [missed_speech(speech, segs) for (_x, speech), segs in zip(tracks, out, strict=True)]
    if not any(missed):
        return out
    logger.debug("re-decoding %d missed stretch(es)", sum(map(len, missed)))
    again = decode([(x, m) for (x, _s), m in zip(tracks, missed, strict=True)], RETRY_WINDOW_S)
    return [_merge_passes(*passes) for passes in zip(out, again, missed, strict=True)]


def _merge_passes(
    first: list[AsrSegment], second: list[AsrSegment], gaps: list[Interval]
) -> list[AsrSegment]:
    """First-pass segments, with each gap taken from the second pass when it found more words
    there (words belong where their midpoint is, give or take the window padding)."""

    def in_gap(w: Word, gap: Interval) -> bool:
        return gap[0] - WINDOW_PAD_S <= (w.start + w.end) / 2 <= gap[1] + WINDOW_PAD_S

    def count(segs: list[AsrSegment], gap: Interval) -> int:
        return sum(in_gap(w, gap) for seg in segs for w in seg.words)

    won = [g for g in gaps if count(second, g) > count(first, g)]

    def in_won(w: Word) -> bool:
        return any(in_gap(w, g) for g in won)

    kept = [p for seg in first for p in _keep_words(seg, lambda w: not in_won(w))]
    kept += [p for seg in second for p in _keep_words(seg, in_won)]
    return sorted(kept, key=lambda seg: seg.start)


def _keep_words(seg: AsrSegment, keep: Callable[[Word], bool]) -> list[AsrSegment]:
    """The runs of consecutive kept words of a segment, each as a segment of its own."""
    runs: list[list[Word]] = [[]]
    for w in seg.words:
        if keep(w):
            runs[-1].append(w)
        elif runs[-1]:
            runs.append([])
    if len(runs) == 1 and len(runs[0]) == len(seg.words):
        return [seg]
    return [
        AsrSegment(
            r[0].start,
            r[-1].end,
            " ".join(w.word for w in r),
            r,
            seg.avg_logprob,
            seg.no_speech_prob,
        )  # fmt: skip
        for r in runs
        if r
    ]


def decoded_segment(
    packed: PackedSpeech,
    window: Interval,
    words: list[Word],
    text: str,
    avg_logprob: float | None,
    no_speech_prob: float | None,
    cfg: TranscribeConfig,
    speech: list[list[Interval]],
) -> tuple[int, AsrSegment | None]:
    """(track, segment) from what one packed window decoded to (words in packed seconds);
    the segment is None when `make_segment` drops it."""
    track, span = packed.locate(window)
    words = packed.to_track(words, window)
    return track, make_segment(words, text, span, avg_logprob, no_speech_prob, cfg, speech[track])


def is_hallucination(
    avg_logprob: float | None, no_speech_prob: float | None, cfg: TranscribeConfig
) -> bool:
    """Whisper's silence rule: the model thinks there is no speech and is unsure of its text.

    On non-speech tiny.en invents short phrases ("Thank you."); both conditions must hold so
    that confidently decoded quiet speech is kept.
    """
    if avg_logprob is None or no_speech_prob is None:
        return False
    return no_speech_prob > cfg.max_no_speech_prob and avg_logprob < cfg.min_avg_logprob


def compression_ratio(text: str) -> float:
    """Bytes of `text` over bytes of its zlib compression (openai-whisper's loop detector)."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def clean_words(words: list[Word], window: Interval) -> list[Word]:
    """Stripped, non-empty words clamped into their window, with non-decreasing times."""
    out: list[Word] = []
    lo, hi = window
    prev_start = lo
    for w in words:
        text = w.word.strip()
        if not text:
            continue
        start = min(max(w.start, prev_start, lo), hi)
        end = min(max(w.end, start), hi)
        out.append(Word(word=text, start=start, end=end, probability=w.probability))
        prev_start = start
    return out


def loop_start(words: list[Word], min_repeats: int = 3, max_ngram: int = 4) -> int:
    """Index of the first word of a decoding loop: the second copy of an n-gram (n <= 4) that
    repeats back to back at least `min_repeats` times; len(words) when there is none.

    >>> from callqa.schemas import Word
    >>> ws = [Word(word=t, start=0, end=0) for t in "my full full full full".split()]
    >>> loop_start(ws)
    2
    """
    tokens = [w.word.lower().strip(".,!?") for w in words]
    for i in range(len(tokens)):
        for n in range(1, max_ngram + 1):
            gram = tokens[i : i + n]
            if len(gram) < n:
                break
            repeats = 1
            while tokens[i + repeats * n : i + (repeats + 1) * n] == gram:
                repeats += 1
            if repeats >= min_repeats:
                return i + n
    return len(tokens)


def make_segment(
    words: list[Word],
    text: str,
    window: Interval,
    avg_logprob: float | None,
    no_speech_prob: float | None,
    cfg: TranscribeConfig,
    speech: list[Interval] | None = None,
) -> AsrSegment | None:
    """An AsrSegment from one decoded window part, or None if empty or a hallucination.

    With `speech`, words that touch no speech interval (words invented in a pause that a
    window spans) are dropped, and the text is rebuilt from the words kept.
    """
    words = clean_words(words, window)
    text = text.strip()
    if speech is not None:
        kept = [w for w in words if _touches_speech(w, speech)]
        if len(kept) < len(words):
            logger.debug(
                "dropped %d word(s) outside speech in %.2f-%.2f s",
                len(words) - len(kept),
                window[0],
                window[1],
            )
            words, text = kept, " ".join(w.word for w in kept)
    if not words or not text:
        return None
    ratio = compression_ratio(text)
    if ratio > MAX_COMPRESSION_RATIO:
        # Keep what came before the loop ("my full full full ..." -> "my full"); the recovery
        # pass then re-decodes the speech the loop swallowed.
        head = words[: loop_start(words)]
        head_text = " ".join(w.word for w in head)
        if (
            len(head) < MIN_WORDS_BEFORE_LOOP
            or compression_ratio(head_text) > MAX_COMPRESSION_RATIO
        ):
            logger.warning(
                "dropped a repetition loop at %.2f-%.2f s (compression ratio %.1f): %r",
                window[0],
                window[1],
                ratio,
                text[:80],
            )
            return None
        logger.warning(
            "cut a repetition loop at %.2f s, kept %d words before it: %r",
            head[-1].end,
            len(head),
            head_text[-60:],
        )
        words, text = head, head_text
    if is_hallucination(avg_logprob, no_speech_prob, cfg):
        logger.debug(
            "dropped %r at %.2f-%.2f s (no_speech_prob %.2f, avg_logprob %.2f)",
            text,
            window[0],
            window[1],
            no_speech_prob,
            avg_logprob,
        )
        return None
    return AsrSegment(
        start=words[0].start,
        end=words[-1].end,
        text=text,
        words=words,
        avg_logprob=avg_logprob,
        no_speech_prob=no_speech_prob,
    )


def _touches_speech(word: Word, speech: list[Interval]) -> bool:
    # Word times from cross-attention are rough near pauses: allow the window padding.
    return any(
        word.start < end + WINDOW_PAD_S and word.end > start - WINDOW_PAD_S for start, end in speech
    )


def check_track(audio_16k: np.ndarray) -> np.ndarray:
    """The track as contiguous 1-D float32, or a ValueError saying what is wrong."""
    x = np.asarray(audio_16k)
    if x.ndim != 1:
        raise ValueError(f"ASR expects one mono 16 kHz track (1-D array), got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)
