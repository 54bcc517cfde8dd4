"""Voice activity detection with the Silero VAD model shipped in the `silero-vad` package.

16 kHz (or 8 kHz) mono float32 tracks in -> lists of (start_s, end_s) speech intervals out.

Silero scores one 32 ms window per ONNX call, and at batch 1 the call overhead dominates
(~140 us a window: 80% of bare ASR time on a stereo call, STACK_NOTES). So every track is cut
into pieces that are scored side by side as one batch (~45 us a window at batch 16+). Each piece
starts `WARMUP_S` early so the recurrent state has settled when its own windows begin; the
warm-up windows' scores are dropped. The per-window scores then go through silero-vad's own
`get_speech_timestamps_from_probs`, so thresholds and padding mean what they mean upstream.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

import numpy as np

from callqa.config import VadConfig
from callqa.schemas import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)
Interval = tuple[float, float]
_lock = threading.Lock()

PIECE_S = 10.0  # audio a batch row scores (after its warm-up)
WARMUP_S = 3.0  # context before a piece whose scores are dropped (1 s was not always enough)
MAX_ROWS = 32  # rows per ONNX call: beyond ~32 a row costs no less (measured: 44 vs 41 us)


@lru_cache(maxsize=1)
def _silero():
    """The `silero_vad` package. Importing it calls torch.set_num_threads(1) for the whole
    process (which made every later torch step in a scoring run single-threaded): undo that."""
    import torch

    threads = torch.get_num_threads()
    import silero_vad
    import silero_vad.utils_vad

    torch.set_num_threads(threads)
    return silero_vad


@lru_cache(maxsize=1)
def _load_model():
    # The ONNX build is ~2x faster than the JIT one on CPU (STACK_NOTES).
    return _silero().load_silero_vad(onnx=True)


def _window(sample_rate_hz: int) -> int:
    if sample_rate_hz not in (8000, SAMPLE_RATE_HZ):
        raise ValueError(f"Silero VAD needs 8000 or 16000 Hz audio, got {sample_rate_hz}")
    return 512 if sample_rate_hz == SAMPLE_RATE_HZ else 256


def _has_speech_candidate(x: np.ndarray, sample_rate_hz: int, chunk: int = 1 << 20) -> bool:
    if x.size < sample_rate_hz // 10:
        return False
    # piece by piece: |x| of a whole 4-hour track would be another copy of it
    return any(bool(np.any(np.abs(x[i : i + chunk]) > 1e-4)) for i in range(0, x.size, chunk))


def speech_probs(tracks: list[np.ndarray], sample_rate_hz: int) -> list[np.ndarray]:
    """Silero speech probability of every window (512 samples at 16 kHz) of each track.

    All tracks are scored in the same batches; a track's last window is zero-padded. A track's
    first row starts from a fresh state at the track start, exactly as upstream; later rows
    begin `WARMUP_S` before their first scored window.

    >>> [p.shape for p in speech_probs([np.zeros(1600, np.float32)], SAMPLE_RATE_HZ)]
    [(4,)]
    """
    import torch

    win = _window(sample_rate_hz)
    piece, warm = int(PIECE_S * sample_rate_hz) // win, int(WARMUP_S * sample_rate_hz) // win
    rows = []  # (track, first scored window, windows scored, warm-up windows before it)
    out = []
    for i, x in enumerate(tracks):
        n = -(-len(x) // win)
        out.append(np.zeros(n, np.float32))
        rows.append((i, 0, min(warm + piece, n), 0))
        rows += [(i, w0, min(piece, n - w0), warm) for w0 in range(warm + piece, n, piece)]
    model = _load_model()
    with _lock, torch.no_grad():  # the ONNX wrapper keeps recurrent state: one caller at a time
        for b0 in range(0, len(rows), MAX_ROWS):
            batch = rows[b0 : b0 + MAX_ROWS]
            steps = max(lead + n for _, _, n, lead in batch)
            chunk = np.zeros((len(batch), steps * win), np.float32)
            for r, (i, w0, n, lead) in enumerate(batch):
                seg = tracks[i][(w0 - lead) * win : (w0 + n) * win]
                chunk[r, : len(seg)] = seg
            model.reset_states(len(batch))
            t = torch.from_numpy(chunk)
            scores = np.concatenate(
                [
                    model(t[:, k * win : (k + 1) * win], sample_rate_hz).numpy()
                    for k in range(steps)
                ],
                axis=1,
            )
            for r, (i, w0, n, lead) in enumerate(batch):
                out[i][w0 : w0 + n] = scores[r, lead : lead + n]
        model.reset_states()
    return out


def detect_speech_many(
    tracks: list[np.ndarray],
    sample_rate_hz: int,
    cfg: VadConfig = VadConfig(),  # noqa: B008 - frozen
) -> list[list[Interval]]:
    """Speech intervals (seconds) of several mono tracks, scored in shared batches."""
    get_speech_timestamps_from_probs = _silero().utils_vad.get_speech_timestamps_from_probs
    _window(sample_rate_hz)
    live = [i for i, x in enumerate(tracks) if _has_speech_candidate(x, sample_rate_hz)]
    probs = speech_probs(
        [np.ascontiguousarray(tracks[i], dtype=np.float32) for i in live], sample_rate_hz
    )
    out: list[list[Interval]] = [[] for _ in tracks]
    for i, p in zip(live, probs, strict=True):
        stamps = get_speech_timestamps_from_probs(
            p.tolist(),
            sampling_rate=sample_rate_hz,
            threshold=cfg.threshold,
            min_speech_duration_ms=cfg.min_speech_ms,
            min_silence_duration_ms=cfg.min_silence_ms,
            speech_pad_ms=cfg.speech_pad_ms,
            return_seconds=False,
            audio_length_samples=len(tracks[i]),
        )
        out[i] = [(s["start"] / sample_rate_hz, s["end"] / sample_rate_hz) for s in stamps]
    return out


def detect_speech(
    x: np.ndarray,
    sample_rate_hz: int,
    cfg: VadConfig = VadConfig(),  # noqa: B008 - frozen
) -> list[Interval]:
    """Speech intervals (seconds) of a mono signal.

    >>> detect_speech(np.zeros(SAMPLE_RATE_HZ, np.float32), SAMPLE_RATE_HZ)
    []
    """
    return detect_speech_many([x], sample_rate_hz, cfg)[0]
