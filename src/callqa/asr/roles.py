"""Speaker roles for mono calls: diarization with the GE2E speaker encoder, then agent identification.

16 kHz mono float32 + VAD speech intervals in -> speaker turns (start_s, end_s, speaker) ->
the agent speaker (from greeting/closing text similarity) -> (start_s, end_s, role) turns.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

logger = logging.getLogger(__name__)

Interval = tuple[float, float]
Turn = tuple[float, float, int]

SAMPLE_RATE_HZ = 16000
# resemblyzer's mel front end: 25 ms windows every 10 ms, 40 bands (resemblyzer/hparams.py).
_MEL_HOP = 160
_MEL_WIN = 400
_MEL_BANDS = 40
_MEL_FRAME_S = _MEL_HOP / SAMPLE_RATE_HZ
# GE2E was trained on utterances normalised to -30 dBFS and its input is a power (not log)
# mel spectrogram, so the level changes the embedding: normalise the speech to the same level.
_TARGET_DBFS = -30.0


@dataclass(frozen=True)
class DiarizeOptions:
    """Knobs of `diarize`; the defaults were chosen on real two-speaker mixes (benchmarks/)."""

    window_s: float = 1.2  # speaker-embedding window; GE2E's own partials are 1.6 s
    hop_s: float = 0.25
    # Speech pieces shorter than this are embedded with surrounding audio up to this length.
    min_window_s: float = 0.5
    grid_s: float = 0.05  # time resolution of the re-segmentation
    # Viterbi re-segmentation: emission = score_scale * cosine to the speaker centroid;
    # a speaker change costs change_penalty inside a VAD segment, gap_change_penalty across
    # a pause (people mostly take turns at pauses).
    score_scale: float = 10.0
    change_penalty: float = 6.0
    gap_change_penalty: float = 1.0
    refine_iterations: int = 2
    # Two clusters whose centroids are closer than this are one voice (single-speaker call).
    same_speaker_similarity: float = 0.86
    # With less speech than this the call is treated as one speaker.
    min_total_speech_s: float = 2.0
    clustering: str = "spectral"  # "spectral" | "agglomerative" | "kmeans"


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
        n_speakers: the most speakers to find (2 for a call).
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

    mel = _mel(_normalise(x, segs))
    windows = _windows(segs, mel.shape[0], opt)
    emb = _embed(mel, windows)
    grid = _Grid(segs, windows, opt.grid_s)

    labels = _cluster(emb, n_speakers, opt.clustering)
    centroids = _centroids(emb, labels, n_speakers)
    frame_labels = None
    for _ in range(max(1, opt.refine_iterations + 1)):
        centroids = _merge_similar(centroids, opt.same_speaker_similarity)
        if len(centroids) == 1:
            break
        scores = grid.frame_scores(emb @ centroids.T)
        frame_labels = _viterbi(scores, grid.after_gap, opt)
        new = _centroids_from_frames(emb, grid, frame_labels, len(centroids))
        if new is None:
            break
        centroids = new
    if frame_labels is None or len(centroids) == 1:
        logger.debug("diarize: one speaker (%.1f s speech)", total_speech_s)
        return [(s, e, 0) for s, e in segs]
    turns = _order_speakers(grid.turns(frame_labels))
    logger.debug(
        "diarize: %d turns, %d speakers from %d windows over %.1f s speech",
        len(turns),
        len({t[2] for t in turns}),
        len(windows),
        total_speech_s,
    )
    return turns


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


def _normalise(x: np.ndarray, segs: list[Interval]) -> np.ndarray:
    parts = [x[int(s * SAMPLE_RATE_HZ) : int(e * SAMPLE_RATE_HZ)] for s, e in segs]
    speech = np.concatenate(parts) if parts else x
    rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) if speech.size else 0.0
    if rms < 1e-6:
        return x
    return (x * (10 ** (_TARGET_DBFS / 20) / rms)).astype(np.float32)


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


def _embed(mel: np.ndarray, windows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """L2-normalised GE2E embeddings (n, 256) of the mel windows, batched by window length."""
    import torch

    encoder = _load_encoder()
    out = np.zeros((len(windows), encoder.linear.out_features), dtype=np.float32)
    lengths = windows[:, 1] - windows[:, 0]
    with torch.inference_mode():
        for length in np.unique(lengths):
            idx = np.flatnonzero(lengths == length)
            for i in range(0, idx.size, batch_size):
                chunk = idx[i : i + batch_size]
                batch = np.stack([mel[a : a + length] for a in windows[chunk, 0]])
                _, (hidden, _) = encoder.lstm(torch.from_numpy(batch))
                raw = encoder.relu(encoder.linear(hidden[-1]))
                # ReLU can zero a whole embedding on near-silence; avoid dividing by zero.
                raw = raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-8)
                out[chunk] = raw.numpy()
    return out


def _cluster(emb: np.ndarray, n_speakers: int, method: str) -> np.ndarray:
    """Initial speaker label per window (cosine geometry; embeddings are L2-normalised)."""
    n = len(emb)
    k = min(n_speakers, n)
    if k < 2:
        return np.zeros(n, dtype=np.int64)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(k, n_init=10, random_state=0).fit_predict(emb)
    if method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        return AgglomerativeClustering(k, metric="cosine", linkage="average").fit_predict(emb)
    if method != "spectral":
        raise ValueError(f"unknown clustering {method!r}: use spectral, agglomerative or kmeans")
    return _spectral(emb, k)


def _spectral(emb: np.ndarray, k: int) -> np.ndarray:
    """Spectral clustering on a pruned cosine affinity (Wang et al. 2018, Park et al. 2019).

    Keeping only each window's nearest neighbours removes the many middling similarities
    between two voices of the same gender that make plain k-means split by content instead.
    """
    from sklearn.cluster import KMeans

    n = len(emb)
    aff = np.clip(emb @ emb.T, 0.0, 1.0)
    keep = max(2, min(n - 1, int(round(0.2 * n))))
    # Row-wise pruning: keep each row's `keep` largest values, then symmetrise.
    thresh = -np.partition(-aff, keep - 1, axis=1)[:, keep - 1 : keep]
    pruned = np.where(aff >= thresh, aff, 0.0)
    pruned = 0.5 * (pruned + pruned.T)
    deg = pruned.sum(axis=1)
    d = 1.0 / np.sqrt(np.maximum(deg, 1e-12))
    lap = np.eye(n) - d[:, None] * pruned * d[None, :]
    _, vecs = np.linalg.eigh(lap)
    feats = vecs[:, :k]
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
    """Speech on a regular time grid, and which embedding windows cover each grid frame."""

    def __init__(self, segs: list[Interval], windows: np.ndarray, grid_s: float):
        self.segs = segs
        self.grid_s = grid_s
        seg_of, centers = [], []
        for i, (s, e) in enumerate(segs):
            n = max(1, int(round((e - s) / grid_s)))
            step = (e - s) / n
            centers.append(s + step * (np.arange(n) + 0.5))
            seg_of.append(np.full(n, i))
        self.t = np.concatenate(centers)
        self.seg = np.concatenate(seg_of)
        self.after_gap = np.r_[False, self.seg[1:] != self.seg[:-1]]
        # Sparse cover matrix (frames x windows) as index lists: window w covers frame f when
        # the frame centre lies inside the window.
        frame_idx = self.t / _MEL_FRAME_S
        a = np.searchsorted(frame_idx, windows[:, 0], side="left")
        b = np.searchsorted(frame_idx, windows[:, 1], side="left")
        self.cover_rows = np.concatenate([np.arange(lo, hi) for lo, hi in zip(a, b)] or [[]])
        self.cover_cols = np.concatenate(
            [np.full(hi - lo, w) for w, (lo, hi) in enumerate(zip(a, b))] or [[]]
        ).astype(np.int64)
        self.cover_rows = self.cover_rows.astype(np.int64)
        self.window_frames = (a, b)

    def frame_scores(self, window_scores: np.ndarray) -> np.ndarray:
        """Average the window scores (n_windows, k) over the windows covering each frame."""
        n, k = len(self.t), window_scores.shape[1]
        sums = np.zeros((n, k))
        counts = np.zeros(n)
        np.add.at(sums, self.cover_rows, window_scores[self.cover_cols])
        np.add.at(counts, self.cover_rows, 1.0)
        missing = counts == 0
        if missing.any():
            # A frame no window covers (rounding at segment edges) takes the nearest window.
            lo, hi = self.window_frames
            win_mid = (lo + hi) / 2.0
            for f in np.flatnonzero(missing):
                w = int(np.argmin(np.abs(win_mid - f)))
                sums[f] = window_scores[w]
                counts[f] = 1.0
        return sums / counts[:, None]

    def turns(self, labels: np.ndarray) -> list[Turn]:
        out: list[Turn] = []
        for i, (s, e) in enumerate(self.segs):
            idx = np.flatnonzero(self.seg == i)
            lab = labels[idx]
            cuts = np.flatnonzero(lab[1:] != lab[:-1]) + 1
            bounds = [s] + [float((self.t[idx[c - 1]] + self.t[idx[c]]) / 2) for c in cuts] + [e]
            starts = np.r_[0, cuts]
            for j, st in enumerate(starts):
                out.append((float(bounds[j]), float(bounds[j + 1]), int(lab[st])))
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


def _centroids_from_frames(
    emb: np.ndarray, grid: _Grid, labels: np.ndarray, k: int
) -> np.ndarray | None:
    """Centroids from windows that lie (mostly) inside one speaker's frames."""
    a, b = grid.window_frames
    window_label = np.full(len(emb), -1)
    for w, (lo, hi) in enumerate(zip(a, b)):
        if hi > lo:
            counts = np.bincount(labels[lo:hi], minlength=k)
            if counts.max() >= 0.9 * (hi - lo):
                window_label[w] = int(np.argmax(counts))
    cents = _centroids(emb, window_label, k)
    return cents if len(cents) == k else None


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


def _sentences(text: str) -> list[str]:
    parts = [p.strip() for p in re.split(r"(?<=[.?!])\s+", text.strip())]
    return [p for p in parts if p]


def pick_agent(
    turn_texts: dict[int, list[tuple[float, str]]],
    agent_examples: Sequence[str],
    encoder,
    min_similarity: float = 0.45,
    min_margin: float = 0.05,
) -> int:
    """The speaker who sounds like the agent: best match to greeting/closing example sentences.

    Each speaker's score is the mean, over the example sentences, of the best cosine similarity
    between that example and any sentence the speaker said. A speaker wins when the score is
    at least `min_similarity` and beats the runner-up by `min_margin`; otherwise (no text, no
    examples, a tie) the speaker who speaks first is the agent.

    Args:
        turn_texts: speaker -> [(start_s, text)] of that speaker's turns.
        agent_examples: sentences an agent says (the scorecard's greeting and closing examples).
        encoder: object with `encode(list[str]) -> np.ndarray` of L2-normalised rows.
        min_similarity: lowest score that counts as a match.
        min_margin: how much the best speaker must beat the others by.

    Returns:
        The agent's speaker index (a key of `turn_texts`).
    """
    if not turn_texts:
        raise ValueError("pick_agent needs at least one speaker's turns")
    first = min(
        turn_texts,
        key=lambda spk: min((t for t, _ in turn_texts[spk]), default=float("inf")),
    )
    examples = [e.strip() for e in agent_examples if e and e.strip()]
    sentences = {
        spk: [s for _, text in turns for s in _sentences(text)] for spk, turns in turn_texts.items()
    }
    if not examples or sum(len(v) for v in sentences.values()) == 0 or len(turn_texts) == 1:
        return first
    flat = [(spk, s) for spk, sents in sentences.items() for s in sents]
    vecs = np.asarray(encoder.encode(examples + [s for _, s in flat]), dtype=np.float32)
    ex_vecs, sent_vecs = vecs[: len(examples)], vecs[len(examples) :]
    owners = np.asarray([spk for spk, _ in flat])
    scores = {}
    for spk in turn_texts:
        mine = sent_vecs[owners == spk]
        scores[spk] = float((ex_vecs @ mine.T).max(axis=1).mean()) if len(mine) else -1.0
    ranked = sorted(scores, key=scores.get, reverse=True)
    best, runner_up = ranked[0], ranked[1]
    logger.debug("pick_agent scores %s (first speaker %s)", scores, first)
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
    for (s, _, spk), ws in zip(turns, per_turn):
        if ws:
            texts.setdefault(spk, []).append((s, ws))
    return {spk: [(s, " ".join(ws)) for s, ws in items] for spk, items in texts.items()}


# --------------------------------------------------------------------------- evaluation


def frame_accuracy(
    reference: Sequence[tuple[float, float, object]],
    hypothesis: Sequence[tuple[float, float, object]],
    step_s: float = 0.01,
) -> tuple[float, float]:
    """Frame-level speaker accuracy under the best one-to-one speaker mapping.

    Scored over frames where the reference has exactly one speaker.

    Returns:
        (accuracy, share of those frames the hypothesis labelled at all); frames the
        hypothesis leaves unlabelled (VAD misses) count as wrong in the accuracy.
    """
    from scipy.optimize import linear_sum_assignment

    end_s = max([e for _, e, _ in list(reference) + list(hypothesis)], default=0.0)
    n = int(np.ceil(end_s / step_s)) + 1
    ref_labels = sorted({lab for _, _, lab in reference}, key=str)
    hyp_labels = sorted({lab for _, _, lab in hypothesis}, key=str)
    if not ref_labels:
        return float("nan"), float("nan")
    ref = np.zeros((len(ref_labels), n), dtype=bool)
    for s, e, lab in reference:
        ref[ref_labels.index(lab), int(round(s / step_s)) : int(round(e / step_s))] = True
    hyp = np.full(n, -1)
    for s, e, lab in hypothesis:
        hyp[int(round(s / step_s)) : int(round(e / step_s))] = hyp_labels.index(lab)
    single = ref.sum(axis=0) == 1
    if not single.any():
        return float("nan"), float("nan")
    ref_single = np.argmax(ref, axis=0)[single]
    hyp_single = hyp[single]
    counts = np.zeros((len(ref_labels), max(1, len(hyp_labels))))
    labelled = hyp_single >= 0
    np.add.at(counts, (ref_single[labelled], hyp_single[labelled]), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / single.sum()), float(labelled.mean())
