"""Voice activity detection with the Silero VAD model shipped in the `silero-vad` package.

16 kHz (or 8 kHz) mono float32 in -> list of (start_s, end_s) speech intervals out.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

import numpy as np

from callqa.config import VadConfig

logger = logging.getLogger(__name__)
Interval = tuple[float, float]
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _load_model():
    import torch

    threads = torch.get_num_threads()
    # `import silero_vad` calls torch.set_num_threads(1) for the whole process: undo that.
    from silero_vad import load_silero_vad

    torch.set_num_threads(threads)
    # The ONNX build is ~2x faster than the JIT one on CPU (STACK_NOTES).
    return load_silero_vad(onnx=True)


def detect_speech(
    x: np.ndarray,
    sample_rate_hz: int,
    cfg: VadConfig = VadConfig(),  # noqa: B008 - frozen
) -> list[Interval]:
    """Speech intervals (seconds) of a mono signal.

    >>> detect_speech(np.zeros(16000, np.float32), 16000)
    []
    """
    if sample_rate_hz not in (8000, 16000):
        raise ValueError(f"Silero VAD needs 8000 or 16000 Hz audio, got {sample_rate_hz}")
    if x.size < sample_rate_hz // 10 or not np.any(np.abs(x) > 1e-4):
        return []
    import torch
    from silero_vad import get_speech_timestamps

    model = _load_model()
    with _lock:  # the ONNX wrapper keeps recurrent state: one caller at a time
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            model,
            threshold=cfg.threshold,
            sampling_rate=sample_rate_hz,
            min_speech_duration_ms=cfg.min_speech_ms,
            min_silence_duration_ms=cfg.min_silence_ms,
            speech_pad_ms=cfg.speech_pad_ms,
            return_seconds=False,
        )
        model.reset_states()
    return [(s["start"] / sample_rate_hz, s["end"] / sample_rate_hz) for s in stamps]
