"""ASR backend interface: one role's 16 kHz track + VAD speech -> segments with word timestamps.

`load_backend(cfg)` loads the configured model once (faster-whisper or transformers). Both
backends transcribe only speech: VAD intervals are merged into windows of at most 30 s (one
Whisper input each), and results come back in absolute seconds of the track.
"""

from __future__ import annotations

import logging
import zlib
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
# Context added around each window so onsets/offsets clipped by the VAD stay audible.
WINDOW_PAD_S = 0.2
# A speech stretch longer than MAX_WINDOW_S is cut at the quietest frame of the last
# SPLIT_SEARCH_S seconds before the limit, so the cut falls in a pause rather than a word.
SPLIT_SEARCH_S = 5.0
_SPLIT_FRAME_S = 0.1
# openai-whisper's compression_ratio_threshold: text that gzips this well is a decoding loop
# ("the the the ...", ". . . ."), not speech.
MAX_COMPRESSION_RATIO = 2.4


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

    def transcribe(self, audio_16k: np.ndarray, speech: list[Interval]) -> list[AsrSegment]:
        """Transcribe the speech intervals (seconds) of a 16 kHz mono float32 track."""
        ...


def load_backend(cfg: TranscribeConfig) -> AsrBackend:
    """Load the configured ASR model once.

    Args:
        cfg: the `transcribe` params section (backend, model, device, compute type, ...).

    Returns:
        A backend whose `transcribe` can be called for many tracks.
    """
    if cfg.backend == "faster-whisper":
        from callqa.asr.faster_whisper import FasterWhisperBackend

        return FasterWhisperBackend(cfg)
    if cfg.backend == "transformers":
        from callqa.asr.transformers_whisper import TransformersWhisperBackend

        return TransformersWhisperBackend(cfg)
    raise ValueError(
        f"transcribe.backend: unknown backend {cfg.backend!r}; use 'faster-whisper' or "
        "'transformers'"
    )


def speech_windows(
    audio_16k: np.ndarray,
    speech: list[Interval],
    max_window_s: float = MAX_WINDOW_S,
    pad_s: float = WINDOW_PAD_S,
) -> list[Interval]:
    """Merge VAD speech intervals into Whisper input windows of at most `max_window_s`.

    Consecutive intervals share a window while it stays within the limit (one 30 s input
    costs the same whether it holds 2 s or 30 s of speech); each window gets `pad_s` of
    context on both sides, clipped to the track and kept clear of the neighbouring windows.
    A single interval longer than the limit is cut at the quietest frame near the limit.

    >>> speech_windows(np.zeros(16000 * 60, np.float32), [(1.0, 2.0), (5.0, 6.0), (40.0, 41.0)])
    [(0.8, 6.2), (39.8, 41.2)]
    """
    duration_s = len(audio_16k) / SAMPLE_RATE_HZ
    pieces: list[Interval] = []
    for start, end in sorted(speech):
        start, end = max(0.0, float(start)), min(duration_s, float(end))
        if end <= start:
            continue
        pieces.extend(_split_long(audio_16k, start, end, max_window_s - 2 * pad_s))
    merged: list[list[float]] = []
    for start, end in pieces:
        if merged and end - merged[-1][0] <= max_window_s - 2 * pad_s:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    windows: list[Interval] = []
    for i, (start, end) in enumerate(merged):
        # Pad at most half-way to a neighbour, so windows never overlap and no word is
        # decoded twice.
        lo = (merged[i - 1][1] + start) / 2 if i > 0 else 0.0
        hi = (end + merged[i + 1][0]) / 2 if i + 1 < len(merged) else duration_s
        windows.append(
            (round(max(lo, start - pad_s, 0.0), 3), round(min(hi, end + pad_s, duration_s), 3))
        )
    return windows


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
        logger.warning(
            "dropped a repetition loop at %.2f-%.2f s (compression ratio %.1f): %r",
            window[0],
            window[1],
            ratio,
            text[:80],
        )
        return None
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
