"""Scorer: one call recording -> QAResult (preprocess, ASR, roles, metrics, scorecard).

`callqa score`, the model server and the `score_inbox` flow each hold one `Scorer`, which loads
every model once. There is no second copy of the scoring logic anywhere.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callqa.audio.io import AudioError, load_audio, scan_folder
from callqa.config import PreprocessConfig, ScoreConfig, TranscribeConfig
from callqa.files import atomic_path, content_id
from callqa.schemas import (
    AsrInfo,
    ErrorInfo,
    QAError,
    QAResult,
    ScorecardInfo,
    round_times,
)

logger = logging.getLogger(__name__)


@dataclass
class Scored:
    """A result plus the role audio its report draws."""

    result: QAResult
    tracks: dict[str, np.ndarray]


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files as given (in order), folders expanded to their audio files (sorted).

    Files in a folder whose extension is not an audio one are skipped and named in one warning
    (sidecars and other companions of a recording are not); a file given by name is always kept.
    """
    out: list[Path] = []
    skipped: list[Path] = []
    for p in paths:
        if p.is_dir():
            scan = scan_folder(p)
            if not scan.audio:
                logger.warning("%s: a folder with no audio files in it", p)
            out.extend(scan.audio)
            skipped.extend(scan.other)
        else:
            out.append(p)
    if skipped:
        shown = ", ".join(str(s) for s in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        logger.warning(
            "skipped %d file(s) that are not audio by their extension: %s%s (name a file "
            "directly to score it anyway)", len(skipped), shown, more,
        )  # fmt: skip
    return out


class Scorer:
    """Loads the ASR backend, the sentence encoder and the scorecard once; scores many calls."""

    def __init__(
        self,
        preprocess: PreprocessConfig,
        transcribe: TranscribeConfig,
        score: ScoreConfig,
        max_duration_s: float | None = None,
    ):
        from callqa.asr.backend import load_backend
        from callqa.asr.transcribe import CachedAsr
        from callqa.qa.encoder import get_encoder
        from callqa.qa.scorecard import Scorecard

        self.pre_cfg, self.tr_cfg, self.score_cfg = preprocess, transcribe, score
        self.max_duration_s = max_duration_s
        self.scorecard = Scorecard.load(score.scorecard)
        self.encoder = get_encoder(score.sentence_encoder)
        self.asr = CachedAsr(load_backend(transcribe), transcribe)

    def score_path(self, path: Path) -> Scored:
        """Score one file; raises AudioError for input that cannot be scored."""
        from callqa.asr.transcribe import transcribe_prepared
        from callqa.audio.metrics import call_metrics
        from callqa.audio.prepare import prepare
        from callqa.qa.scorecard import evaluate

        audio = load_audio(path, max_duration_s=self.max_duration_s)
        _check_samples(audio, path)
        # The log-mel image feeds only a trained model; reports draw their own spectrogram.
        prep = prepare(audio, self.pre_cfg, with_logmel=False)
        tr = transcribe_prepared(
            prep,
            self.asr,
            self.encoder,
            self.scorecard.agent_examples(),
            self.score_cfg.diarization_speakers,
        )
        mono = tr.roles_from == "diarization"
        words = {
            role: [w for s in tr.segments if s.role == role for w in s.words] for role in tr.speech
        }
        metrics = call_metrics(
            tr.speech, words, prep.duration_s, prep.input_stats, tr.tracks, mono=mono
        )
        metrics = round_times(metrics)
        checks, score, critical = evaluate(
            self.scorecard, tr.segments, metrics, prep.duration_s, self.encoder
        )
        result = QAResult(
            call_id=content_id(path),
            path=str(path),
            duration_s=round(prep.duration_s, 3),
            channels=prep.channels,
            sample_rate_hz=prep.sample_rate_hz,
            roles_from=tr.roles_from,
            segments=tr.segments,
            metrics=metrics,
            checks=checks,
            score=score,
            critical_fail=critical,
            asr=AsrInfo(backend=self.asr.backend.name, model=self.asr.backend.model_id),
            scorecard=ScorecardInfo(path=str(self.scorecard.path), sha256=self.scorecard.sha256),
        )
        return Scored(result, tr.tracks)

    def score(self, path: Path) -> QAResult | QAError:
        """One output line for `path`: a result, or an error entry (never raises on bad audio)."""
        return self._score_one(Path(path))[0]

    def _score_one(self, path: Path) -> tuple[QAResult | QAError, dict | None]:
        try:
            scored = self.score_path(path)
            return scored.result, scored.tracks
        except AudioError as err:
            return _error(path, err.code, err.message), None
        except Exception as err:  # noqa: BLE001 - one bad call must not stop the batch
            logger.exception("%s: scoring failed", path)
            return _error(path, "internal_error", f"{type(err).__name__}: {err}"), None

    def score_files(
        self, paths: list[Path], out: Path, report_dir: Path | None = None, progress: bool = True
    ) -> dict:
        """Score `paths` in order into JSON lines at `out` (+ HTML reports); returns a summary."""
        from callqa.progress import track

        t0 = time.perf_counter()
        hits_before = self.asr.hits
        lines, results = [], []
        for path in track(paths, "score", enabled=progress):
            res, tracks = self._score_one(Path(path))
            lines.append(res.model_dump_json())
            results.append(res)
            if report_dir is not None and tracks is not None:
                from callqa.qa.report import write_report

                write_report(res, tracks, 16000, Path(report_dir))
            if isinstance(res, QAError):
                logger.warning("%s: %s (%s)", path, res.error.message, res.error.code)
        with atomic_path(out) as tmp:
            tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        if report_dir is not None:
            from callqa.qa.report import write_index

            write_index(results, Path(report_dir))
        ok = [r for r in results if isinstance(r, QAResult)]
        summary = {
            "calls": len(paths),
            "scored": len(ok),
            "failed": len(paths) - len(ok),
            "critical_fail": sum(r.critical_fail for r in ok),
            "mean_score": round(float(np.mean([r.score for r in ok])), 1) if ok else None,
            "audio_s": round(sum(r.duration_s for r in ok), 1),
            "asr_cached_tracks": self.asr.hits - hits_before,
            "wall_s": round(time.perf_counter() - t0, 1),
            "results": str(out),
        }
        if report_dir is not None:
            summary["reports"] = str(Path(report_dir) / "index.html")
        logger.info("score: %s", json.dumps(summary))
        return summary


def _check_samples(audio, path: Path) -> None:
    if not np.isfinite(audio.samples).all():
        raise AudioError(
            "nan_samples", f"{Path(path).name}: the audio holds NaN or infinite samples"
        )
    if audio.duration_s < 0.1:
        raise AudioError("too_short", f"{Path(path).name}: {audio.duration_s:.3f} s is too short")
    if audio.sample_rate_hz < 8000:
        raise AudioError(
            "sample_rate_too_low",
            f"{Path(path).name}: {audio.sample_rate_hz} Hz is below the 8000 Hz minimum",
        )


def _error(path: Path, code: str, message: str) -> QAError:
    cid = content_id(path) if Path(path).is_file() else None
    return QAError(path=str(path), call_id=cid, error=ErrorInfo(code=code, message=message))
