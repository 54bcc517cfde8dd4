"""Transcript -> word runs: each role's words split into turns, the text the checks search.

A run holds consecutive words of one role (normalised tokens with times, plus the raw words
for evidence); checks match phrases in a run's text and compare candidate spans of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from callqa.schemas import Evidence, Segment
from callqa.text.normalize import normalize_text

# Words further apart than this are not joined into one candidate span or phrase match.
MAX_WORD_GAP_S = 2.0


@dataclass
class Token:
    norm: str
    start: float
    end: float
    raw: int  # index into Run.raw_words


@dataclass
class Run:
    """Consecutive words of one role with no gap over MAX_WORD_GAP_S, plus segment bounds."""

    role: str
    raw_words: list[str]
    tokens: list[Token]
    segments: list[tuple[int, int]]  # token ranges [i0, i1) of the ASR segments in this run

    def text(self, i0: int, i1: int) -> str:
        return " ".join(t.norm for t in self.tokens[i0:i1])

    def raw_text(self, i0: int, i1: int) -> str:
        r0, r1 = self.tokens[i0].raw, self.tokens[i1 - 1].raw
        return " ".join(self.raw_words[r0 : r1 + 1])


def _segment_words(seg: Segment) -> list[tuple[str, float, float]]:
    words = [(w.word.strip(), w.start, w.end) for w in seg.words if w.word.strip()]
    if words:
        return words
    # No word timestamps: spread the text's words evenly over the segment.
    parts = seg.text.split()
    step = (seg.end - seg.start) / max(len(parts), 1)
    return [(w, seg.start + i * step, seg.start + (i + 1) * step) for i, w in enumerate(parts)]


def build_runs(segments: list[Segment]) -> list[Run]:
    """Split each role's words (time order) into runs of one turn.

    A run ends at a silence longer than MAX_WORD_GAP_S or where another role starts speaking in
    between (a turn change), so no candidate span joins two sides of the other party's reply.
    """
    runs: list[Run] = []
    for role in sorted({s.role for s in segments}):
        other_starts = np.array(sorted(s.start for s in segments if s.role != role))
        run: Run | None = None
        last_end = -math.inf
        for seg in sorted((s for s in segments if s.role == role), key=lambda s: s.start):
            seg_i0 = None
            for word, start, end in _segment_words(seg):
                norms = normalize_text(word).split()
                if not norms:
                    continue
                # Another role's segment starting after our last word and before this one.
                lo = np.searchsorted(other_starts, last_end, side="right")
                turn_change = lo < np.searchsorted(other_starts, start, side="left")
                if run is None or start - last_end > MAX_WORD_GAP_S or turn_change:
                    if run is not None and seg_i0 is not None:
                        run.segments.append((seg_i0, len(run.tokens)))
                    run = Run(role, [], [], [])
                    runs.append(run)
                    seg_i0 = 0
                if seg_i0 is None:
                    seg_i0 = len(run.tokens)
                run.raw_words.append(word)
                run.tokens += [Token(n, start, end, len(run.raw_words) - 1) for n in norms]
                last_end = max(last_end, end)
            if run is not None and seg_i0 is not None:
                run.segments.append((seg_i0, len(run.tokens)))
    return runs


def runs_for(runs: list[Run], role: str) -> list[Run]:
    return [r for r in runs if role in ("any", "call") or r.role == role]


def span_evidence(run: Run, i0: int, i1: int) -> Evidence:
    return Evidence(
        start=round(run.tokens[i0].start, 3),
        end=round(run.tokens[i1 - 1].end, 3),
        role=run.role,
        text=run.raw_text(i0, i1),
    )


def candidate_spans(run: Run, span_words: list[int], stride: int) -> list[tuple[int, int]]:
    """Each ASR segment whole, plus sliding windows of consecutive words across the run."""
    n = len(run.tokens)
    spans = set(run.segments)
    for size in span_words:
        if n <= size:
            spans.add((0, n))
            continue
        starts = list(range(0, n - size + 1, stride))
        if starts[-1] != n - size:
            starts.append(n - size)  # so the last words are covered too
        spans.update((s, s + size) for s in starts)
    return sorted(spans)
