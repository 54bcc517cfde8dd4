"""Speech packing: a track's VAD speech -> padded pieces laid end to end in Whisper inputs.

A 30 s Whisper input costs the same whether it holds 3 s or 30 s of speech, so both ASR
backends decode only the speech, packed into inputs of at most 30 s, and map the decoded times
back to the track (`PackedSpeech.locate`, `PackedSpeech.to_track`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from callqa.schemas import SAMPLE_RATE_HZ, Word

Interval = tuple[float, float]

# Whisper sees 30 s per input; longer clips are cut (faster-whisper only logs a warning).
MAX_WINDOW_S = 30.0
# Context added around each speech interval so onsets/offsets clipped by the VAD stay audible.
WINDOW_PAD_S = 0.2
# Pieces closer than this keep the pause between them (a natural pause helps the decoder).
JOIN_GAP_S = 1.0
TAIL_PAD_S = 0.05  # silence after the packed speech (see `pack_speech`)
# A speech stretch longer than MAX_WINDOW_S is cut at the quietest frame of the last
# SPLIT_SEARCH_S seconds before the limit, so the cut falls in a pause rather than a word.
SPLIT_SEARCH_S = 5.0
_SPLIT_FRAME_S = 0.1


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

    >>> x = np.zeros(SAMPLE_RATE_HZ * 60, np.float32)
    >>> speech_pieces(x, [(1.0, 2.0), (2.5, 3.0), (40.0, 41.0)])
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

    >>> p = pack_speech([(np.zeros(SAMPLE_RATE_HZ * 60, np.float32), [(1.0, 2.0), (40.0, 41.0)])])
    >>> p.windows, len(p.audio) / SAMPLE_RATE_HZ
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
