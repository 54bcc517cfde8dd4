"""ASR backend interface: one role's 16 kHz track + VAD speech -> segments with word timestamps.

The backends (faster_whisper.py, transformers_whisper.py) build on `PackedBackend`, and
`callqa.asr.transcribe.load_backend(cfg)` picks one, so imports point one way. Both transcribe
only speech: VAD intervals are merged into windows of at most 30 s (one Whisper input each; the
silence between them left out), and results come back in absolute seconds of the track.
"""

from __future__ import annotations

import bisect
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from callqa.config import TranscribeConfig
from callqa.schemas import Word

logger = logging.getLogger(__name__)

Interval = tuple[float, float]
SAMPLE_RATE_HZ = 16000
# Whisper sees 30 s per input; longer clips are cut (faster-whisper only logs a warning).
MAX_WINDOW_S = 30.0
# Context added around each speech interval so onsets/offsets clipped by the VAD stay audible.
WINDOW_PAD_S = 0.2
# Pieces closer than this keep the pause between them (a natural pause helps the decoder).
JOIN_GAP_S = 1.0
TAIL_PAD_S = 0.05  # silence after the packed speech (see `pack_speech`)
# Second pass for speech Whisper skipped: VAD intervals of at least RETRY_MIN_S that came
# back with under RETRY_MIN_WPS words a second are decoded again in inputs of RETRY_WINDOW_S
# (conversational speech runs at 2-3 words a second).
RETRY_MIN_S = 1.0
RETRY_MIN_WPS = 1.2
RETRY_WINDOW_S = 10.0
# A speech stretch longer than MAX_WINDOW_S is cut at the quietest frame of the last
# SPLIT_SEARCH_S seconds before the limit, so the cut falls in a pause rather than a word.
SPLIT_SEARCH_S = 5.0
_SPLIT_FRAME_S = 0.1
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


def speech_pieces(
    audio_16k: np.ndarray,
    speech: list[Interval],
    max_piece_s: float = MAX_WINDOW_S,
    pad_s: float = WINDOW_PAD_S,
    join_gap_s: float = JOIN_GAP_S,
) -> list[Interval]:
    """VAD speech as padded, non-overlapping pieces of the track (seconds).

    Each interval gets `pad_s` of context on both sides (at most half-way to a neighbour, so
    no word is decoded twice); pieces less than `join_gap_s` apart are joined, so short pauses
    stay real audio. An interval longer than `max_piece_s` is cut at its quietest frame near
    the limit.

    >>> speech_pieces(np.zeros(16000 * 60, np.float32), [(1.0, 2.0), (2.5, 3.0), (40.0, 41.0)])
    [(0.8, 3.2), (39.8, 41.2)]
    """
    duration_s = len(audio_16k) / SAMPLE_RATE_HZ
    cut: list[Interval] = []
    for start, end in sorted(speech):
        start, end = max(0.0, float(start)), min(duration_s, float(end))
        if end > start:
            cut.extend(_split_long(audio_16k, start, end, max_piece_s - 2 * pad_s))
    padded: list[Interval] = []
    for i, (start, end) in enumerate(cut):
        lo = (cut[i - 1][1] + start) / 2 if i > 0 else 0.0
        hi = (end + cut[i + 1][0]) / 2 if i + 1 < len(cut) else duration_s
        padded.append((max(lo, start - pad_s, 0.0), min(hi, end + pad_s, duration_s)))
    pieces: list[list[float]] = []
    for start, end in padded:
        if pieces and start - pieces[-1][1] < join_gap_s and end - pieces[-1][0] <= max_piece_s:
            pieces[-1][1] = end
        else:
            pieces.append([start, end])
    return [(round(s, 3), round(e, 3)) for s, e in pieces]


@dataclass
class Piece:
    """One stretch of speech: where it sits in the packed audio and in its track."""

    at_s: float  # start in the packed audio
    track: int  # index of the track it came from
    start_s: float  # start in that track
    duration_s: float


@dataclass
class PackedSpeech:
    """The speech pieces of one or more tracks laid end to end, grouped into Whisper inputs.

    A 30 s Whisper input costs the same whether it holds 3 s or 30 s of speech, so the
    silence between pieces (the other party talking, hold music) is left out, as
    faster-whisper's own VAD path does. A window never mixes tracks, so the two channels of
    a call decode in one batch. `locate` and `to_track` map decoded times back.
    """

    audio: np.ndarray  # the pieces, end to end
    windows: list[Interval]  # Whisper inputs, in seconds of `audio`
    pieces: list[Piece]

    def _pieces_in(self, window: Interval) -> list[Piece]:
        inside = [p for p in self.pieces if window[0] - 1e-6 <= p.at_s < window[1] - 1e-6]
        if not inside:
            raise ValueError(f"no speech piece in packed window {window}")
        return inside

    def locate(self, window: Interval) -> tuple[int, Interval]:
        """The track a window came from and its span there (first to last piece, seconds)."""
        ps = self._pieces_in(window)
        span = (round(ps[0].start_s, 3), round(ps[-1].start_s + ps[-1].duration_s, 3))
        return ps[0].track, span

    def to_track(self, words: list[Word], window: Interval) -> list[Word]:
        """Words decoded from `window` in seconds of their track. A word belongs to the piece
        holding its midpoint and is clamped into it: no word spans the silence left out."""
        ps = self._pieces_in(window)
        starts = [p.at_s for p in ps]
        out = []
        for w in words:
            p = ps[max(0, bisect.bisect_right(starts, (w.start + w.end) / 2) - 1)]
            start = p.start_s + min(max(w.start - p.at_s, 0.0), p.duration_s)
            end = p.start_s + min(max(w.end - p.at_s, 0.0), p.duration_s)
            out.append(w.model_copy(update={"start": start, "end": max(end, start)}))
        return out

    def window_of(self, start: float, end: float) -> Interval:
        """The window holding a decoded segment's midpoint, else the nearest one."""
        mid = (start + end) / 2
        return min(
            self.windows,
            key=lambda w: 0.0 if w[0] <= mid <= w[1] else min(abs(mid - w[0]), abs(mid - w[1])),
        )


def pack_speech(
    tracks: list[tuple[np.ndarray, list[Interval]]], max_window_s: float = MAX_WINDOW_S
) -> PackedSpeech:
    """Cut each track's speech into pieces (`speech_pieces`) and pack them, in order, into
    Whisper inputs of at most `max_window_s`; each track starts a new input.

    >>> p = pack_speech([(np.zeros(16000 * 60, np.float32), [(1.0, 2.0), (40.0, 41.0)])])
    >>> p.windows, len(p.audio) / 16000
    ([(0.0, 2.8)], 2.85)
    """
    parts, pieces, windows = [], [], []
    offset_n = 0
    for track, (x, speech) in enumerate(tracks):
        new_track = True
        for start, end in speech_pieces(x, speech, max_window_s):
            a, b = int(round(start * SAMPLE_RATE_HZ)), int(round(end * SAMPLE_RATE_HZ))
            if b <= a:
                continue
            here, there = offset_n / SAMPLE_RATE_HZ, (offset_n + b - a) / SAMPLE_RATE_HZ
            if not new_track and there - windows[-1][0] <= max_window_s:
                windows[-1][1] = there
            else:
                windows.append([here, there])
            new_track = False
            parts.append(x[a:b])
            pieces.append(Piece(here, track, a / SAMPLE_RATE_HZ, (b - a) / SAMPLE_RATE_HZ))
            offset_n += b - a
    # A little silence after the last piece: faster-whisper asserts that its clips add up to
    # no more than the audio, and windows rounded to 1 ms could pass the end by a hair.
    parts.append(np.zeros(int(TAIL_PAD_S * SAMPLE_RATE_HZ) if parts else 0, np.float32))
    audio = np.concatenate(parts).astype(np.float32)
    return PackedSpeech(audio, [(round(s, 3), round(e, 3)) for s, e in windows], pieces)


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


def _split_long(audio_16k: np.ndarray, start: float, end: float, limit_s: float) -> list[Interval]:
    out: list[Interval] = []
    while end - start > limit_s:
        search_lo = start + max(limit_s - SPLIT_SEARCH_S, limit_s / 2)
        cut = _quietest_point(audio_16k, search_lo, start + limit_s)
        out.append((start, cut))
        start = cut
    out.append((start, end))
    return out


def _quietest_point(audio_16k: np.ndarray, lo_s: float, hi_s: float) -> float:
    frame = int(_SPLIT_FRAME_S * SAMPLE_RATE_HZ)
    a, b = int(lo_s * SAMPLE_RATE_HZ), int(hi_s * SAMPLE_RATE_HZ)
    n_frames = (b - a) // frame
    if n_frames < 1:
        return hi_s
    frames = audio_16k[a : a + n_frames * frame].astype(np.float32).reshape(n_frames, frame)
    energy = np.mean(frames**2, axis=1)
    # Centre of the quietest frame; ties go to the latest frame (longest first piece).
    best = n_frames - 1 - int(np.argmin(energy[::-1]))
    return (a + best * frame + frame // 2) / SAMPLE_RATE_HZ


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
