"""Speaker embeddings for diarization: 16 kHz audio -> GE2E voice embeddings of mel windows,
and the clustering of those embeddings into speakers.

The encoder is resemblyzer's pretrained GE2E (shipped in its wheel), run on a mel spectrogram
computed once per call, exactly as resemblyzer computes it.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import chain

import numpy as np

from callqa.audio.signal_stats import CHUNK, cumsum_at
from callqa.schemas import SAMPLE_RATE_HZ

# resemblyzer's mel front end: 25 ms windows every 10 ms, 40 bands (resemblyzer/hparams.py).
MEL_HOP = 160
MEL_WIN = 400
MEL_BANDS = 40
MEL_FRAME_S = MEL_HOP / SAMPLE_RATE_HZ
# GE2E was trained on utterances normalised to -30 dBFS (resemblyzer/hparams.py).
TARGET_DBFS = -30.0


@lru_cache(maxsize=1)
def load_voice_encoder():
    """The pretrained GE2E encoder shipped inside the resemblyzer wheel (CPU, loaded once)."""
    from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder(device="cpu", verbose=False)
    encoder.eval()
    return encoder


def frame_power(x: np.ndarray, n_frames: int) -> np.ndarray:
    """Mean square of the samples in each mel frame's 25 ms window (frames centred as librosa)."""
    pad = MEL_WIN // 2
    size = x.size + 2 * pad  # of x zero-padded by `pad` each side
    starts = np.arange(n_frames) * MEL_HOP
    ends = np.minimum(starts + MEL_WIN, size)
    # the running sum of the squared padded signal, piece by piece (no float64 copy of it all)
    squares = (x[None, i : i + CHUNK].astype(np.float64) ** 2 for i in range(0, x.size, CHUNK))
    pieces = chain([np.zeros((1, pad))], squares, [np.zeros((1, pad))])
    csum = cumsum_at(pieces, np.r_[ends, starts])[0]
    return (csum[:n_frames] - csum[n_frames:]) / MEL_WIN


def mel_spectrogram(x: np.ndarray, chunk_frames: int = 1 << 14) -> np.ndarray:
    """(frames, 40) power mel spectrogram exactly as resemblyzer computes it, for the whole call.

    A call longer than 2 x `chunk_frames` frames goes in pieces of `chunk_frames` to twice
    that (the last takes the remainder): librosa's whole-call STFT took GBs on a 2-hour call.
    Each frame sees the same samples (zeros past the ends, as librosa pads), and the values are
    the same bit for bit (a piece of very few frames would not be: BLAS takes another path).
    """
    import librosa

    def mel(y, center=True):
        kw = {"sr": SAMPLE_RATE_HZ, "n_fft": MEL_WIN, "hop_length": MEL_HOP, "n_mels": MEL_BANDS}
        return librosa.feature.melspectrogram(y=y, center=center, **kw).T

    n_frames = 1 + x.size // MEL_HOP
    starts = list(range(0, max(1, n_frames - chunk_frames + 1), chunk_frames))
    if len(starts) == 1:
        return np.ascontiguousarray(mel(x), dtype=np.float32)
    out = np.empty((n_frames, MEL_BANDS), np.float32)
    for f0, f1 in zip(starts, [*starts[1:], n_frames], strict=True):
        a, b = f0 * MEL_HOP - MEL_WIN // 2, (f1 - 1) * MEL_HOP - MEL_WIN // 2 + MEL_WIN
        piece = np.zeros(b - a, np.float32)
        piece[max(a, 0) - a : min(b, x.size) - a] = x[max(a, 0) : min(b, x.size)]
        out[f0:f1] = mel(piece, center=False)
    return out


def embed_windows(
    mel: np.ndarray, windows: np.ndarray, power: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """L2-normalised GE2E embeddings (n, 256) of the mel windows, batched by window length.

    `power` is each mel frame's mean-square signal (`frame_power`).

    Each window is scaled to -30 dBFS on its own: the encoder's input is a power (not log)
    mel spectrogram, so without this it clusters loud against quiet speech (a shouting
    customer, a quiet agent) instead of voice against voice.
    """
    import torch

    encoder = load_voice_encoder()
    out = np.zeros((len(windows), encoder.linear.out_features), dtype=np.float32)
    lengths = windows[:, 1] - windows[:, 0]
    csum = np.r_[0.0, np.cumsum(power)]
    window_power = (csum[windows[:, 1]] - csum[windows[:, 0]]) / np.maximum(lengths, 1)
    target_power = 10 ** (TARGET_DBFS / 10)
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


def subsample(emb: np.ndarray, max_n: int) -> np.ndarray:
    if len(emb) <= max_n:
        return emb
    return emb[np.linspace(0, len(emb) - 1, max_n).round().astype(np.int64)]


def follow_labels(
    emb: np.ndarray, sub: np.ndarray, sub_labels: np.ndarray, k: int, unit=None
) -> np.ndarray:
    """Window labels from labels of `sub` (the windows, a subsample, or units via `unit`)."""
    if unit is not None and len(sub) == int(unit.max()) + 1:
        return sub_labels[unit]
    if len(sub) == len(emb):
        return sub_labels
    centroids = speaker_centroids(sub, sub_labels, k)
    return np.argmax(emb @ centroids.T, axis=1)


def agglomerative(emb: np.ndarray, k: int, min_share: float = 0.1) -> np.ndarray:
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
    centroids = speaker_centroids(emb[active], labels, k)
    return np.argmax(emb @ centroids.T, axis=1)


def spectral(emb: np.ndarray, k: int, keep_share: float = 0.2) -> np.ndarray:
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


def speaker_centroids(emb: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    cents = []
    for j in range(k):
        members = emb[labels == j]
        if len(members):
            c = members.mean(axis=0)
            cents.append(c / max(np.linalg.norm(c), 1e-8))
    return np.asarray(cents, dtype=np.float32)


def merge_similar(centroids: np.ndarray, threshold: float) -> np.ndarray:
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
