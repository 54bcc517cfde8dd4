"""Mono diarization: 16 kHz audio + VAD speech intervals -> speaker turns (start_s, end_s, speaker).

Voice embeddings of short windows (`callqa.asr.speakers`) are clustered into speakers, then the
speech is re-segmented on a fine time grid with Viterbi, so turns change where voices do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from callqa.asr import speakers
from callqa.schemas import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

Interval = tuple[float, float]
Turn = tuple[float, float, int]


@dataclass(frozen=True)
class DiarizeOptions:
    """Knobs of `diarize`; defaults chosen on real two-speaker audio (benchmarks/bench_roles.py)."""

    window_s: float = 1.2  # speaker-embedding window; GE2E's own partials are 1.6 s
    hop_s: float = 0.25
    # Speech pieces shorter than this are embedded with surrounding audio up to this length.
    min_window_s: float = 0.5
    grid_s: float = 0.05  # time resolution of the re-segmentation
    # Initial clusterings tried; the one whose speakers end up best separated wins.
    # "units": average-linkage clustering of ~2 s speech units, robust when one speaker
    # dominates; "spectral": spectral clustering of the windows, better on balanced calls.
    clusterings: tuple[str, ...] = ("units", "spectral")
    unit_s: float = 2.0
    # Viterbi re-segmentation: emission = score_scale * cosine to the speaker centroid;
    # a speaker change costs change_penalty inside a VAD segment, gap_change_penalty across
    # a pause (people mostly take turns at pauses). Frame scores are averages over 1.2 s
    # windows and already smooth, so penalties below ~10 changed little; 30 lost short turns.
    score_scale: float = 10.0
    change_penalty: float = 6.0
    gap_change_penalty: float = 1.0
    refine_iterations: int = 2
    # Two speakers whose centroids are closer than this are one voice. Measured final
    # centroids: two similar voices on one phone line up to 0.87, one speaker split in two
    # 0.70-0.88, so this only catches the obvious cases: a call is assumed to have two parties.
    same_speaker_similarity: float = 0.92
    # A clustering that gives a speaker less than this share of the speech loses to one
    # that does not (see _segment).
    min_speaker_share: float = 0.05
    # With less speech than this the call is treated as one speaker.
    min_total_speech_s: float = 3.0
    # Cluster at most this many windows (evenly spaced); the rest follow their centroids.
    max_cluster_windows: int = 1500


def diarize(
    x16k: np.ndarray,
    speech: Sequence[Interval],
    n_speakers: int = 2,
    options: DiarizeOptions | None = None,
) -> list[Turn]:
    """Who spoke when, within the VAD speech of a mono 16 kHz call.

    Speakers are numbered 0..n_speakers-1 in order of their first turn, so speaker 0 speaks
    first. A call with little speech, or whose clusters sound like one voice, is all speaker 0.

    Args:
        x16k: mono float32 samples at 16 kHz (telephone audio upsampled from 8 kHz is fine).
        speech: VAD speech intervals in seconds (`callqa.audio.vad.detect_speech`).
        n_speakers: speakers to find (2 for a call); fewer only when one vanishes during
            re-segmentation. There is no model selection: a 2-party call asked for 3 gets 3.
        options: algorithm settings; defaults when None.

    Returns:
        Turns (start_s, end_s, speaker) in time order, covering the speech intervals; a
        speech interval is split where the speaker changes.
    """
    opt = options or DiarizeOptions()
    x = np.asarray(x16k, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"diarize needs mono audio (1-D samples), got shape {x.shape}")
    if n_speakers < 1:
        raise ValueError(f"n_speakers must be at least 1, got {n_speakers}")
    duration_s = x.size / SAMPLE_RATE_HZ
    segs = _clean_intervals(speech, duration_s)
    if not segs:
        return []
    total_speech_s = sum(e - s for s, e in segs)
    if n_speakers == 1 or total_speech_s < opt.min_total_speech_s:
        return [(s, e, 0) for s, e in segs]

    mel = speakers.mel_spectrogram(x)
    windows = _windows(segs, mel.shape[0], opt)
    emb = speakers.embed_windows(mel, windows, speakers.frame_power(x, mel.shape[0]))
    grid = _Grid(segs, windows, opt.grid_s)

    turns = _segment(emb, grid, n_speakers, opt)
    logger.debug(
        "diarize: %d turns, %d speakers from %d windows over %.1f s speech",
        len(turns),
        len({t[2] for t in turns}),
        len(windows),
        total_speech_s,
    )
    return turns


def _segment(emb: np.ndarray, grid: _Grid, n_speakers: int, opt: DiarizeOptions) -> list[Turn]:
    """Cluster the window embeddings, then re-segment the speech frames with Viterbi.

    Tries n_speakers first and fewer when a speaker vanishes during re-segmentation.
    """
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for k in range(n_speakers, 1, -1):
        for method in opt.clusterings:
            labels = _cluster(emb, grid, k, method, opt)
            result = _refine(emb, grid, labels, k, opt)
            if result is None:
                continue
            # A "speaker" with a sliver of the speech is usually one odd moment (a laugh, a
            # cough) set apart; it separates well but is not a speaker split: rank it last.
            shares = np.bincount(result[1], minlength=k) / len(result[1])
            score = result[0] if shares.min() >= opt.min_speaker_share else result[0] - 10.0
            logger.debug("diarize: %s, %d speakers: score %.3f shares %s", method, k, score, shares)
            if best is None or score > best[0]:
                best = (score, result[1], result[2])
        if best is not None:
            break
    if best is None:
        return [(s, e, 0) for s, e in grid.segs]
    _, frame_labels, centroids = best
    merged = speakers.merge_similar(centroids, opt.same_speaker_similarity)
    if len(merged) == 1:
        return [(s, e, 0) for s, e in grid.segs]
    if len(merged) < len(centroids):
        frame_labels = _viterbi(grid.frame_scores(emb @ merged.T), grid.after_gap, opt)
    return _order_speakers(grid.turns(frame_labels))


def _refine(
    emb: np.ndarray, grid: _Grid, labels: np.ndarray, k: int, opt: DiarizeOptions
) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Viterbi re-segmentation from initial window labels, re-estimating the centroids.

    Returns:
        (separation margin, frame labels, centroids), or None when a speaker vanishes.
    """
    centroids = speakers.speaker_centroids(emb, labels, k)
    if len(centroids) < k:
        return None
    frame_labels = None
    for _ in range(opt.refine_iterations + 1):
        frame_labels = _viterbi(grid.frame_scores(emb @ centroids.T), grid.after_gap, opt)
        window_labels = grid.pure_window_labels(frame_labels, k)
        new = speakers.speaker_centroids(emb, window_labels, k)
        if len(new) < k:
            return None
        centroids = new
    # Separation: how much closer each clean window is to its own speaker than to the next
    # best one; used to choose between clusterings (a split by voice usually separates better
    # than one by mood or content).
    window_labels = grid.pure_window_labels(frame_labels, k)
    clean = window_labels >= 0
    sims = emb[clean] @ centroids.T
    own = sims[np.arange(clean.sum()), window_labels[clean]]
    sims[np.arange(clean.sum()), window_labels[clean]] = -np.inf
    margin = float(np.mean(own - sims.max(axis=1)))
    return margin, frame_labels, centroids


def _clean_intervals(speech: Sequence[Interval], duration_s: float) -> list[Interval]:
    """Sorted, clipped to the signal, overlaps merged, empty ones dropped."""
    out: list[list[float]] = []
    for s, e in sorted((float(a), float(b)) for a, b in speech):
        s, e = max(0.0, s), min(duration_s, e)
        if e - s <= 1e-3:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _windows(segs: list[Interval], n_frames: int, opt: DiarizeOptions) -> np.ndarray:
    """(n, 2) mel-frame ranges [a, b) of the embedding windows, all inside speech when possible."""
    win = max(1, round(opt.window_s / speakers.MEL_FRAME_S))
    hop = max(1, round(opt.hop_s / speakers.MEL_FRAME_S))
    min_win = min(win, max(1, round(opt.min_window_s / speakers.MEL_FRAME_S)))
    out = []
    for s, e in segs:
        a, b = int(s / speakers.MEL_FRAME_S), min(n_frames, int(np.ceil(e / speakers.MEL_FRAME_S)))
        length = b - a
        if length >= win:
            starts = list(range(a, b - win + 1, hop))
            if starts[-1] != b - win:
                starts.append(b - win)
            out.extend((st, st + win) for st in starts)
        elif length >= min_win:
            out.append((a, b))
        else:
            # Too short to embed alone: widen symmetrically (the padding is mostly pause).
            mid = (a + b) // 2
            lo = max(0, min(mid - min_win // 2, n_frames - min_win))
            out.append((lo, min(n_frames, lo + min_win)))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def _cluster(
    emb: np.ndarray, grid: _Grid, n_speakers: int, method: str, opt: DiarizeOptions
) -> np.ndarray:
    """Initial speaker label per window (cosine geometry; embeddings are L2-normalised)."""
    n = len(emb)
    k = min(n_speakers, n)
    if k < 2:
        return np.zeros(n, dtype=np.int64)
    if method == "units":
        unit = grid.window_units(opt.unit_s)
        n_units = int(unit.max()) + 1
        if n_units >= 2 * k:
            unit_emb = np.zeros((n_units, emb.shape[1]))
            np.add.at(unit_emb, unit, emb)
            unit_emb /= np.maximum(np.linalg.norm(unit_emb, axis=1, keepdims=True), 1e-8)
            labels = speakers.agglomerative(
                speakers.subsample(unit_emb, opt.max_cluster_windows), k
            )
            return speakers.follow_labels(
                emb, speakers.subsample(unit_emb, opt.max_cluster_windows), labels, k, unit
            )
        method = "agglomerative"  # too few units: cluster the windows themselves
    sub = speakers.subsample(emb, opt.max_cluster_windows)
    if method == "agglomerative":
        return speakers.follow_labels(emb, sub, speakers.agglomerative(sub, k), k)
    if method == "spectral":
        return speakers.follow_labels(emb, sub, speakers.spectral(sub, k), k)
    raise ValueError(f"unknown clustering {method!r}: use units, spectral or agglomerative")


class _Grid:
    """The speech on a regular time grid, and which embedding windows cover which grid frames.

    Frames are `grid_s` long (rounded so that each VAD segment holds a whole number of them);
    window w covers frames `window_frames[0][w]` to `window_frames[1][w]` (exclusive).
    """

    def __init__(self, segs: list[Interval], windows: np.ndarray, grid_s: float):
        self.segs = segs
        centres, seg_of = [], []
        for i, (s, e) in enumerate(segs):
            n = max(1, int(round((e - s) / grid_s)))
            centres.append(s + (e - s) / n * (np.arange(n) + 0.5))
            seg_of.append(np.full(n, i))
        self.t = np.concatenate(centres)
        self.seg = np.concatenate(seg_of)
        self.after_gap = np.r_[False, self.seg[1:] != self.seg[:-1]]
        frame_pos = self.t / speakers.MEL_FRAME_S  # frame centres in mel frames
        lo = np.searchsorted(frame_pos, windows[:, 0], side="left")
        hi = np.searchsorted(frame_pos, windows[:, 1], side="left")
        self.window_frames = (lo, hi)
        self.window_mid_s = windows.mean(axis=1) * speakers.MEL_FRAME_S
        self._cover = self._cover_matrix(lo, hi, len(self.t))

    @staticmethod
    def _cover_matrix(lo: np.ndarray, hi: np.ndarray, n_frames: int):
        """Sparse (frames, windows) matrix, row-normalised: a frame averages its windows.

        A frame that no window covers (rounding at segment edges) takes its nearest window.
        """
        from scipy.sparse import csr_matrix

        lengths = hi - lo
        rows = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)] + [[]])
        cols = np.repeat(np.arange(len(lo)), lengths)
        covered = np.zeros(n_frames, dtype=bool)
        covered[rows.astype(np.int64)] = True
        orphans = np.flatnonzero(~covered)
        if orphans.size:
            mid = (lo + hi) / 2.0
            nearest = np.argmin(np.abs(mid[None, :] - orphans[:, None]), axis=1)
            rows = np.r_[rows, orphans]
            cols = np.r_[cols, nearest]
        m = csr_matrix((np.ones(rows.size), (rows.astype(np.int64), cols)), (n_frames, len(lo)))
        counts = np.asarray(m.sum(axis=1)).ravel()
        return csr_matrix(m.multiply(1.0 / counts[:, None]))

    def frame_scores(self, window_scores: np.ndarray) -> np.ndarray:
        """(frames, k) average of the (windows, k) scores of the windows covering each frame."""
        return np.asarray(self._cover @ window_scores)

    def pure_window_labels(self, labels: np.ndarray, k: int, purity: float = 0.9) -> np.ndarray:
        """Each window's speaker where `purity` of its frames agree, else -1."""
        lo, hi = self.window_frames
        out = np.full(len(lo), -1)
        for w, (a, b) in enumerate(zip(lo, hi, strict=True)):
            if b > a:
                counts = np.bincount(labels[a:b], minlength=k)
                if counts.max() >= purity * (b - a):
                    out[w] = int(np.argmax(counts))
        return out

    def window_units(self, unit_s: float) -> np.ndarray:
        """Unit index per window: each VAD segment cut into equal pieces of at most unit_s."""
        seg_starts = np.asarray([s for s, _ in self.segs])
        seg = np.clip(np.searchsorted(seg_starts, self.window_mid_s, side="right") - 1, 0, None)
        starts = seg_starts[seg]
        lengths = np.asarray([e - s for s, e in self.segs])[seg]
        pieces = np.maximum(1, np.ceil(lengths / unit_s)).astype(np.int64)
        piece = np.floor((self.window_mid_s - starts) / lengths * pieces).astype(np.int64)
        piece = np.clip(piece, 0, pieces - 1)
        _, unit = np.unique(np.stack([seg, piece]), axis=1, return_inverse=True)
        return unit.reshape(-1)

    def turns(self, labels: np.ndarray) -> list[Turn]:
        """Split each VAD segment where the frame labels change (cut between two frames)."""
        out: list[Turn] = []
        for i, (s, e) in enumerate(self.segs):
            idx = np.flatnonzero(self.seg == i)
            lab = labels[idx]
            cuts = np.flatnonzero(lab[1:] != lab[:-1]) + 1
            bounds = [s, *((self.t[idx[c - 1]] + self.t[idx[c]]) / 2 for c in cuts), e]
            for j, first in enumerate(np.r_[0, cuts]):
                out.append((float(bounds[j]), float(bounds[j + 1]), int(lab[first])))
        return out


def _viterbi(scores: np.ndarray, after_gap: np.ndarray, opt: DiarizeOptions) -> np.ndarray:
    """Best speaker sequence over grid frames with a cost per speaker change."""
    n, k = scores.shape
    emit = opt.score_scale * scores
    back = np.zeros((n, k), dtype=np.int64)
    acc = emit[0].copy()
    for f in range(1, n):
        penalty = opt.gap_change_penalty if after_gap[f] else opt.change_penalty
        stay = acc
        best_prev = int(np.argmax(acc))
        switch = acc[best_prev] - penalty
        use_switch = switch > stay
        back[f] = np.where(use_switch, best_prev, np.arange(k))
        acc = np.where(use_switch, switch, stay) + emit[f]
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(np.argmax(acc))
    for f in range(n - 1, 0, -1):
        path[f - 1] = back[f, path[f]]
    return path


def _order_speakers(turns: list[Turn]) -> list[Turn]:
    """Renumber speakers 0, 1, ... by first appearance and merge touching same-speaker turns."""
    mapping: dict[int, int] = {}
    out: list[Turn] = []
    for s, e, spk in turns:
        spk = mapping.setdefault(spk, len(mapping))
        if out and out[-1][2] == spk and s - out[-1][1] < 1e-6:
            out[-1] = (out[-1][0], e, spk)
        else:
            out.append((s, e, spk))
    return out
