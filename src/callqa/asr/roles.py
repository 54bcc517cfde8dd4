"""Speaker roles for mono calls: GE2E-embedding diarization, then agent identification.

16 kHz mono float32 + VAD speech intervals in -> speaker turns (start_s, end_s, speaker) ->
the agent speaker (by an agent-likeness scorer passed in) -> (start_s, end_s, role) turns.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

logger = logging.getLogger(__name__)

Interval = tuple[float, float]
Turn = tuple[float, float, int]
# How agent-like one speaker's sentences sound (higher: more), on the scale of a cosine
# similarity; the Scorer builds it from the scorecard (`Scorecard.agent_likeness`).
AgentLikeness = Callable[[list[str]], float]

SAMPLE_RATE_HZ = 16000
# resemblyzer's mel front end: 25 ms windows every 10 ms, 40 bands (resemblyzer/hparams.py).
_MEL_HOP = 160
_MEL_WIN = 400
_MEL_BANDS = 40
_MEL_FRAME_S = _MEL_HOP / SAMPLE_RATE_HZ
# GE2E was trained on utterances normalised to -30 dBFS (resemblyzer/hparams.py).
_TARGET_DBFS = -30.0


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


@lru_cache(maxsize=1)
def _load_encoder():
    """The pretrained GE2E encoder shipped inside the resemblyzer wheel (CPU, loaded once)."""
    from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder(device="cpu", verbose=False)
    encoder.eval()
    return encoder


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

    mel = _mel(x)
    windows = _windows(segs, mel.shape[0], opt)
    emb = _embed(mel, windows, _frame_power(x, mel.shape[0]))
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
    merged = _merge_similar(centroids, opt.same_speaker_similarity)
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
    centroids = _centroids(emb, labels, k)
    if len(centroids) < k:
        return None
    frame_labels = None
    for _ in range(opt.refine_iterations + 1):
        frame_labels = _viterbi(grid.frame_scores(emb @ centroids.T), grid.after_gap, opt)
        window_labels = grid.pure_window_labels(frame_labels, k)
        new = _centroids(emb, window_labels, k)
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


def _frame_power(x: np.ndarray, n_frames: int) -> np.ndarray:
    """Mean square of the samples in each mel frame's 25 ms window (frames centred as librosa)."""
    padded = np.pad(x.astype(np.float64), _MEL_WIN // 2)
    csum = np.r_[0.0, np.cumsum(padded**2)]
    starts = np.arange(n_frames) * _MEL_HOP
    ends = np.minimum(starts + _MEL_WIN, padded.size)
    return (csum[ends] - csum[starts]) / _MEL_WIN


def _mel(x: np.ndarray) -> np.ndarray:
    """(frames, 40) power mel spectrogram exactly as resemblyzer computes it, for the whole call."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=x, sr=SAMPLE_RATE_HZ, n_fft=_MEL_WIN, hop_length=_MEL_HOP, n_mels=_MEL_BANDS
    )
    return np.ascontiguousarray(mel.T, dtype=np.float32)


def _windows(segs: list[Interval], n_frames: int, opt: DiarizeOptions) -> np.ndarray:
    """(n, 2) mel-frame ranges [a, b) of the embedding windows, all inside speech when possible."""
    win = max(1, round(opt.window_s / _MEL_FRAME_S))
    hop = max(1, round(opt.hop_s / _MEL_FRAME_S))
    min_win = min(win, max(1, round(opt.min_window_s / _MEL_FRAME_S)))
    out = []
    for s, e in segs:
        a, b = int(s / _MEL_FRAME_S), min(n_frames, int(np.ceil(e / _MEL_FRAME_S)))
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


def _embed(
    mel: np.ndarray, windows: np.ndarray, frame_power: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """L2-normalised GE2E embeddings (n, 256) of the mel windows, batched by window length.

    Each window is scaled to -30 dBFS on its own: the encoder's input is a power (not log)
    mel spectrogram, so without this it clusters loud against quiet speech (a shouting
    customer, a quiet agent) instead of voice against voice.
    """
    import torch

    encoder = _load_encoder()
    out = np.zeros((len(windows), encoder.linear.out_features), dtype=np.float32)
    lengths = windows[:, 1] - windows[:, 0]
    csum = np.r_[0.0, np.cumsum(frame_power)]
    window_power = (csum[windows[:, 1]] - csum[windows[:, 0]]) / np.maximum(lengths, 1)
    target_power = 10 ** (_TARGET_DBFS / 10)
    # Cap the gain (60 dB) so that a window of near-digital-silence is not blown up to noise.
    gains = (target_power / np.maximum(window_power, target_power * 1e-6)).astype(np.float32)
    with torch.inference_mode():
        for length in np.unique(lengths):
            idx = np.flatnonzero(lengths == length)
            for i in range(0, idx.size, batch_size):
                chunk = idx[i : i + batch_size]
                batch = np.stack([mel[a : a + length] for a in windows[chunk, 0]])
                batch *= gains[chunk, None, None]
                _, (hidden, _) = encoder.lstm(torch.from_numpy(batch))
                raw = encoder.relu(encoder.linear(hidden[-1]))
                # ReLU can zero a whole embedding on near-silence; avoid dividing by zero.
                raw = raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-8)
                out[chunk] = raw.numpy()
    return out


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
            labels = _agglomerative(_subsample(unit_emb, opt.max_cluster_windows), k)
            return _follow(emb, _subsample(unit_emb, opt.max_cluster_windows), labels, k, unit)
        method = "agglomerative"  # too few units: cluster the windows themselves
    sub = _subsample(emb, opt.max_cluster_windows)
    if method == "agglomerative":
        return _follow(emb, sub, _agglomerative(sub, k), k)
    if method == "spectral":
        return _follow(emb, sub, _spectral(sub, k), k)
    raise ValueError(f"unknown clustering {method!r}: use units, spectral or agglomerative")


def _subsample(emb: np.ndarray, max_n: int) -> np.ndarray:
    if len(emb) <= max_n:
        return emb
    return emb[np.linspace(0, len(emb) - 1, max_n).round().astype(np.int64)]


def _follow(
    emb: np.ndarray, sub: np.ndarray, sub_labels: np.ndarray, k: int, unit=None
) -> np.ndarray:
    """Window labels from labels of `sub` (the windows, a subsample, or units via `unit`)."""
    if unit is not None and len(sub) == int(unit.max()) + 1:
        return sub_labels[unit]
    if len(sub) == len(emb):
        return sub_labels
    centroids = _centroids(sub, sub_labels, k)
    return np.argmax(emb @ centroids.T, axis=1)


def _agglomerative(emb: np.ndarray, k: int, min_share: float = 0.1) -> np.ndarray:
    """Average-linkage clustering that sets aside tiny clusters of odd windows and retries.

    Plain average linkage tends to put one outlier (a cough, a laugh) in a cluster of its
    own; a cluster with under `min_share` of the items is treated as outliers, removed, and
    the rest clustered again. The outliers then join their nearest cluster.
    """
    from sklearn.cluster import AgglomerativeClustering

    active = np.arange(len(emb))
    labels = np.zeros(len(emb), dtype=np.int64)
    for _ in range(6):
        if len(active) < 2 * k:
            break
        labels = AgglomerativeClustering(k, metric="cosine", linkage="average").fit_predict(
            emb[active]
        )
        counts = np.bincount(labels, minlength=k)
        if counts.min() >= min_share * len(active):
            break
        keep = labels != np.argmin(counts)
        active, labels = active[keep], labels[keep]
    centroids = _centroids(emb[active], labels, k)
    return np.argmax(emb @ centroids.T, axis=1)


def _spectral(emb: np.ndarray, k: int, keep_share: float = 0.2) -> np.ndarray:
    """Spectral clustering on a pruned cosine affinity (Wang et al. 2018, Park et al. 2019).

    Keeping only each window's nearest neighbours drops the many middling similarities between
    two voices of the same gender that make plain k-means split by content or mood instead.
    """
    from scipy.linalg import eigh
    from sklearn.cluster import KMeans

    n = len(emb)
    aff = np.clip(emb @ emb.T, 0.0, 1.0)
    keep = max(2, min(n - 1, int(round(keep_share * n))))
    thresh = -np.partition(-aff, keep - 1, axis=1)[:, keep - 1 : keep]
    pruned = np.where(aff >= thresh, aff, 0.0)
    pruned = 0.5 * (pruned + pruned.T)
    d = 1.0 / np.sqrt(np.maximum(pruned.sum(axis=1), 1e-12))
    laplacian = np.eye(n) - d[:, None] * pruned * d[None, :]
    _, feats = eigh(laplacian, subset_by_index=[0, k - 1])  # the k smallest only
    feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    return KMeans(k, n_init=10, random_state=0).fit_predict(feats)


def _centroids(emb: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    cents = []
    for j in range(k):
        members = emb[labels == j]
        if len(members):
            c = members.mean(axis=0)
            cents.append(c / max(np.linalg.norm(c), 1e-8))
    return np.asarray(cents, dtype=np.float32)


def _merge_similar(centroids: np.ndarray, threshold: float) -> np.ndarray:
    """Merge centroids that are closer than `threshold` (one voice split in two)."""
    cents = [c for c in centroids]
    while len(cents) > 1:
        sims = np.asarray(cents) @ np.asarray(cents).T
        np.fill_diagonal(sims, -1.0)
        i, j = np.unravel_index(np.argmax(sims), sims.shape)
        if sims[i, j] < threshold:
            break
        merged = cents[i] + cents[j]
        cents = [c for n, c in enumerate(cents) if n not in (i, j)]
        cents.append(merged / max(np.linalg.norm(merged), 1e-8))
    return np.asarray(cents, dtype=np.float32)


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
        frame_pos = self.t / _MEL_FRAME_S  # frame centres in mel frames
        lo = np.searchsorted(frame_pos, windows[:, 0], side="left")
        hi = np.searchsorted(frame_pos, windows[:, 1], side="left")
        self.window_frames = (lo, hi)
        self.window_mid_s = windows.mean(axis=1) * _MEL_FRAME_S
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


# --------------------------------------------------------------------------- agent identification


def _sentences(text: str, min_words: int) -> list[str]:
    """Lower-cased sentences without punctuation, as the scorecard examples are written."""
    out = []
    for part in re.split(r"(?<=[.?!])\s+", text.strip()):
        words = re.sub(r"[^\w\s']", " ", part.lower()).split()
        if len(words) >= min_words:
            out.append(" ".join(words))
    return out


def pick_agent(
    turn_texts: dict[int, list[tuple[float, str]]],
    agent_likeness: AgentLikeness | None,
    min_similarity: float = 0.3,
    min_margin: float = 0.08,
    min_words: int = 3,
) -> int:
    """The speaker who sounds like the agent, else the one who speaks first.

    Each speaker's sentences of at least `min_words` words ("bye", "hello" and "thanks" come
    from both sides) are scored by `agent_likeness`. The best speaker wins when its score is
    at least `min_similarity` and beats the runner-up by `min_margin`; otherwise (no text, no
    scorer, a close call) the agent is the speaker who speaks first.

    Customers also thank and say goodbye, so text alone is weak evidence: with the scorecard's
    scorer (`Scorecard.agent_likeness`) on 150 synthetic scripts per phrase bank, margin 0.08
    overrode a first-speaking agent wrongly in 0.7% of calls and found a second-speaking agent
    in 60% (train phrases) / 31% (held-out phrases); margin 0.05 gave 0.7-6% and 79% / 43%.

    Args:
        turn_texts: speaker -> [(start_s, text)] of that speaker's turns.
        agent_likeness: scores one speaker's sentences (lower-cased, no punctuation) on the
            scale of a cosine similarity; None picks the first speaker.
        min_similarity: lowest score that counts as a match.
        min_margin: how much the best speaker must beat the runner-up by.
        min_words: shortest sentence that counts.

    Returns:
        The agent's speaker index (a key of `turn_texts`).
    """
    if not turn_texts:
        raise ValueError("pick_agent needs at least one speaker's turns")
    first = min(
        turn_texts, key=lambda spk: min((t for t, _ in turn_texts[spk]), default=float("inf"))
    )
    sentences = {
        spk: [s for _, text in turns for s in _sentences(text, min_words)]
        for spk, turns in turn_texts.items()
    }
    if len(turn_texts) == 1 or agent_likeness is None or not any(sentences.values()):
        return first
    scores = {spk: float(agent_likeness(ss)) if ss else 0.0 for spk, ss in sentences.items()}
    best, runner_up = sorted(scores, key=scores.get, reverse=True)[:2]
    logger.debug("pick_agent: scores %s, first speaker %s", scores, first)
    if scores[best] >= min_similarity and scores[best] - scores[runner_up] >= min_margin:
        return best
    return first


def assign_roles(turns: Sequence[Turn], agent_speaker: int) -> list[tuple[float, float, str]]:
    """(start_s, end_s, "agent" | "customer") turns: the agent speaker, everyone else customer."""
    return [(s, e, "agent" if spk == agent_speaker else "customer") for s, e, spk in turns]


def turn_texts_from_words(
    turns: Sequence[Turn], words: Sequence[tuple[float, float, str]]
) -> dict[int, list[tuple[float, str]]]:
    """Group ASR words (start_s, end_s, word) into per-speaker turn texts for `pick_agent`.

    A word belongs to the turn that overlaps it most (its midpoint's turn when none does).
    """
    texts: dict[int, list[tuple[float, list[str]]]] = {}
    if not turns:
        return {}
    starts = np.asarray([t[0] for t in turns])
    ends = np.asarray([t[1] for t in turns])
    per_turn: list[list[str]] = [[] for _ in turns]
    for ws, we, w in words:
        overlap = np.minimum(ends, we) - np.maximum(starts, ws)
        if overlap.max() > 0:
            i = int(np.argmax(overlap))
        else:
            mid = (ws + we) / 2
            i = int(np.argmin(np.minimum(np.abs(starts - mid), np.abs(ends - mid))))
        per_turn[i].append(w.strip())
    for (s, _, spk), ws in zip(turns, per_turn, strict=True):
        if ws:
            texts.setdefault(spk, []).append((s, ws))
    return {spk: [(s, " ".join(ws)) for s, ws in items] for spk, items in texts.items()}


# --------------------------------------------------------------------------- evaluation


def frame_accuracy(
    reference: Sequence[tuple[float, float, object]],
    hypothesis: Sequence[tuple[float, float, object]],
    step_s: float = 0.01,
    best_mapping: bool = True,
) -> tuple[float, float]:
    """Frame-level speaker accuracy, over frames where the reference has exactly one speaker.

    Args:
        reference: (start_s, end_s, label) turns; they may overlap.
        hypothesis: (start_s, end_s, label) turns, e.g. from `diarize` or `assign_roles`.
        step_s: frame length.
        best_mapping: map hypothesis labels to reference labels one-to-one so as to maximise
            the accuracy (diarization: speaker numbers are arbitrary); False compares the
            labels as they are (roles: "agent" must be the agent).

    Returns:
        (accuracy, share of those frames the hypothesis labels at all). Frames the hypothesis
        leaves unlabelled (VAD misses) count as wrong in the accuracy; nan without reference.
    """
    from scipy.optimize import linear_sum_assignment

    end_s = max([e for _, e, _ in [*reference, *hypothesis]], default=0.0)
    n = int(np.ceil(end_s / step_s)) + 1
    ref_labels = sorted({lab for _, _, lab in reference}, key=str)
    hyp_labels = sorted({lab for _, _, lab in hypothesis}, key=str)
    ref = np.zeros((len(ref_labels), n), dtype=bool)
    for s, e, lab in reference:
        ref[ref_labels.index(lab), int(round(s / step_s)) : int(round(e / step_s))] = True
    single = ref.sum(axis=0) == 1
    if not single.any():
        return float("nan"), float("nan")
    hyp = np.full(n, -1)
    for s, e, lab in hypothesis:
        hyp[int(round(s / step_s)) : int(round(e / step_s))] = hyp_labels.index(lab)
    ref_single = np.argmax(ref, axis=0)[single]
    hyp_single = hyp[single]
    labelled = hyp_single >= 0
    counts = np.zeros((len(ref_labels), max(1, len(hyp_labels))))
    np.add.at(counts, (ref_single[labelled], hyp_single[labelled]), 1)
    if best_mapping:
        rows, cols = linear_sum_assignment(-counts)
        correct = counts[rows, cols].sum()
    else:
        correct = sum(
            counts[i, hyp_labels.index(lab)]
            for i, lab in enumerate(ref_labels)
            if lab in hyp_labels
        )
    return float(correct / single.sum()), float(labelled.mean())
