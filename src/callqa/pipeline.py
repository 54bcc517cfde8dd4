"""Scorer: one call recording -> QAResult (preprocess, ASR, roles, metrics, trained model,
scorecard).

`callqa score`, the model server and the `score_inbox` flow each hold one `Scorer`, which loads
every model once. There is no second copy of the scoring logic anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callqa.audio.io import AudioError, load_audio, scan_folder
from callqa.config import (
    ConfigError,
    PreprocessConfig,
    ScoreConfig,
    TranscribeConfig,
    ValidateConfig,
    load_setting,
)
from callqa.files import bytes_id, content_id
from callqa.schemas import (
    SAMPLE_RATE_HZ,
    AsrInfo,
    CallEmotion,
    ErrorInfo,
    ModelInfo,
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
    """Loads the ASR backend, the sentence encoder, the scorecard and the trained model (when
    there is one) once; scores many calls."""

    def __init__(
        self,
        preprocess: PreprocessConfig,
        transcribe: TranscribeConfig,
        score: ScoreConfig,
        validate: ValidateConfig = ValidateConfig(),  # noqa: B008 - frozen
    ):
        """Load every model now, so a bad setting stops the run before the first file.

        Args:
            preprocess, transcribe, score: params.yaml sections.
            validate: the input limits (duration, sample rate, channels, minimum speech) a call
                must meet; the same ones `callqa validate` applies.

        Raises:
            ConfigError: a model or the scorecard cannot be loaded; the message names the
                params.yaml key and its value.
        """
        from callqa.asr.transcribe import CachedAsr, load_backend
        from callqa.qa.scorecard import load_with_encoder

        self.pre_cfg, self.tr_cfg, self.score_cfg = preprocess, transcribe, score
        self.limits = validate
        self.scorecard, self.encoder = load_with_encoder(score.scorecard, score.sentence_encoder)
        # The examples of the scorecard's agent_marker checks pick the agent on mono calls.
        self.agent_likeness = self.scorecard.agent_likeness(self.encoder)
        self.asr = CachedAsr(load_backend(transcribe), transcribe)
        self.predictor = _load_model(score.model)

    def score_path(self, path: Path) -> Scored:
        """Score one file; raises AudioError for input that cannot be scored."""
        # passed on, not held here: score_audio frees the decoded samples once they are prepared
        return self.score_audio(
            load_audio(path, max_duration_s=self.limits.max_duration_s),
            Path(path),
            content_id(path),
        )

    def score_bytes(self, data: bytes, name: str = "upload") -> QAResult:
        """Score in-memory audio (the model server); raises AudioError for what cannot be
        scored. `name` stands in for a path in messages and in the result's `path`."""
        from callqa.audio.io import decode_bytes

        return self.score_audio(
            decode_bytes(data, name, max_duration_s=self.limits.max_duration_s),
            Path(name),
            bytes_id(data),
        ).result

    def score_audio(self, audio, path: Path, call_id: str) -> Scored:
        """Score decoded audio; `path` names it in messages and in the result."""
        from callqa.asr.transcribe import transcribe_prepared
        from callqa.audio.metrics import call_metrics
        from callqa.audio.prepare import prepare
        from callqa.qa.evaluate import ModelOutputs, evaluate

        _check_samples(audio, path, self.limits)
        # The trained model reads its mel images out of the call's log-mel (as featurize does);
        # without one nothing does (reports draw their own spectrogram), so it is skipped.
        prep = prepare(audio, self.pre_cfg, with_logmel=self.predictor is not None)
        del audio  # the decoded samples (as large as the role tracks): nothing reads them now
        _check_speech(prep.speech, path, self.limits)
        tr = transcribe_prepared(
            prep, self.asr, self.agent_likeness, self.tr_cfg.diarization_speakers
        )
        mono = tr.roles_from == "diarization"
        words = {
            role: [w for s in tr.segments if s.role == role for w in s.words] for role in tr.speech
        }
        metrics = call_metrics(
            tr.speech, words, prep.duration_s, prep.input_stats, tr.tracks, mono=mono
        )
        metrics = round_times(metrics)
        outputs, emotion, model_info = None, None, None
        if self.predictor is not None:
            pred = self.predictor.predict_call(prep, tr.segments)
            outputs = ModelOutputs(pred.intents, self.predictor.thresholds)
            emotion = CallEmotion.model_validate(round_times(pred.emotion, 4))
            model_info = ModelInfo(path=str(self.predictor.path), sha256=self.predictor.sha256)
        checks, score, critical = evaluate(
            self.scorecard, tr.segments, metrics, prep.duration_s, self.encoder, outputs
        )
        result = QAResult(
            call_id=call_id,
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
            emotion=emotion,
            model=model_info,
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
        self,
        paths: list[Path],
        out: Path,
        report_dir: Path | None = None,
        progress: bool = True,
        resume: bool = False,
        on_result: Callable[[QAResult, Path, Path | None], None] | None = None,
    ) -> dict:
        """Score `paths` in order into JSON lines at `out` (+ HTML reports); returns a summary.

        `on_result(result, audio path, report path or None)` is called after each new result
        line is written (the CLI stores it in the review database); its errors are logged.

        Each line is written and flushed as soon as its call is done, so a crash or a kill loses
        at most the call in progress. `resume=True` keeps the lines already in `out` and skips
        every input that has one (by call_id, or by path for a file that could not be read).
        A report that fails to render turns that call's line into a `report_failed` error.
        """
        from callqa.progress import track

        t0 = time.perf_counter()
        hits_before = self.asr.hits
        out = Path(out)
        _check_out(out, paths)
        if report_dir is not None:
            from callqa.qa.index import check_report_dir

            try:
                check_report_dir(Path(report_dir))
            except ValueError as err:
                raise ConfigError(str(err)) from None
        out.parent.mkdir(parents=True, exist_ok=True)
        done = self._resumable(out) if resume else {}
        counts = {"scored": 0, "failed": 0, "resumed": 0}
        new_ok: list[QAResult] = []
        with open(out, "a" if resume else "w", encoding="utf-8") as f:
            for path in track(paths, "score", enabled=progress):
                path = Path(path)
                previous = _previous_line(done, path)
                if previous is not None:
                    counts["resumed"] += 1
                    counts["failed" if "error" in previous else "scored"] += 1
                    continue
                res = self._score_and_report(path, report_dir)
                f.write(res.model_dump_json() + "\n")
                f.flush()
                if isinstance(res, QAError):
                    counts["failed"] += 1
                    logger.warning("%s: %s (%s)", path, res.error.message, res.error.code)
                else:
                    counts["scored"] += 1
                    new_ok.append(res)
                    if on_result is not None:
                        _call_sink(on_result, res, path, report_dir)
            os.fsync(f.fileno())
        summary = {
            "calls": len(paths),
            **counts,
            "critical_fail": sum(r.critical_fail for r in new_ok),
            "mean_score": round(float(np.mean([r.score for r in new_ok])), 1) if new_ok else None,
            "audio_s": round(sum(r.duration_s for r in new_ok), 1),
            "asr_cached_tracks": self.asr.hits - hits_before,
            "wall_s": round(time.perf_counter() - t0, 1),
            "results": str(out),
        }
        if report_dir is not None:
            summary["reports"] = self._write_index(out, Path(report_dir))
        logger.debug("score: %s", json.dumps(summary))
        return summary

    def _resumable(self, out: Path) -> dict[tuple, dict]:
        """`out`'s lines by (call_id, path), when this scorecard and model made them.

        Raises:
            ConfigError: a line was scored with another scorecard or model (resuming would
                mix the two in one file).
        """
        model = str(self.predictor.sha256) if self.predictor is not None else None
        lines = _result_lines(out)
        for r in lines:
            if "error" in r:
                continue
            card = (r.get("scorecard") or {}).get("sha256")
            made_by = (r.get("model") or {}).get("sha256")
            if card != self.scorecard.sha256 or made_by != model:
                what = "scorecard" if card != self.scorecard.sha256 else "model"
                raise ConfigError(
                    f"{out}: its results were made with another {what} than this run's; "
                    "score into a new --out, or drop --resume to start the file again"
                )
        return {(r.get("call_id"), r.get("path")): r for r in lines}

    def _score_and_report(self, path: Path, report_dir: Path | None) -> QAResult | QAError:
        res, tracks = self._score_one(path)
        if report_dir is None or tracks is None:
            return res
        from callqa.qa.report import write_report

        try:
            write_report(res, tracks, SAMPLE_RATE_HZ, Path(report_dir))
        except Exception as err:  # noqa: BLE001 - one bad report must not stop the batch
            logger.exception("%s: writing the HTML report failed", path)
            return _error(
                path, "report_failed", f"{path.name}: the HTML report could not be written "
                f"({type(err).__name__}: {err})", call_id=res.call_id,
            )  # fmt: skip
        return res

    def _write_index(self, out: Path, report_dir: Path) -> str | None:
        """index.html over every result line in `out` (earlier runs' lines included)."""
        from callqa.qa.index import write_index

        # one row per (call, path): two copies of one recording are two rows
        lines = {(r.get("call_id"), r.get("path")): r for r in _result_lines(out)}.values()
        try:
            parsed = [(QAError if "error" in r else QAResult).model_validate(r) for r in lines]
            write_index(parsed, report_dir)
        except Exception:  # noqa: BLE001 - the results are written; the index is a convenience
            logger.exception("writing the report index in %s failed", report_dir)
            return None
        return str(report_dir / "index.html")


def _call_sink(on_result: Callable, res: QAResult, path: Path, report_dir: Path | None) -> None:
    report = Path(report_dir) / f"{res.call_id}.html" if report_dir is not None else None
    try:
        on_result(res, path, report if report is not None and report.is_file() else None)
    except Exception:  # noqa: BLE001 - the line is written; a sink must not stop the batch
        logger.exception("%s: handing the result on failed", path)


def _load_model(path: Path | None):
    """The trained model at `score.model`, or None (rules only) when there is none.

    Raises:
        ConfigError: the directory exists but does not hold a model that loads.
    """
    if path is None:
        return None
    if not Path(path).exists():
        # the default folder before `make model` is expected; any other path is likely a typo
        level = logging.INFO if Path(path) == ScoreConfig().model else logging.WARNING
        logger.log(
            level, "no trained model at %s: scoring with rules only (train one with `make model`)",
            path,
        )  # fmt: skip
        return None
    from callqa.model.predict import Predictor

    predictor = load_setting("score.model", path, Predictor.load)
    logger.info("trained model %s (sha256 %s)", predictor.path, predictor.sha256[:12])
    return predictor


def _check_out(out: Path, paths: list[Path]) -> None:
    """Refuse an `--out` that would destroy something: one of the inputs, or an existing file
    that is not a callqa results file (it is replaced, or appended to with --resume).

    Raises:
        ConfigError: with what to do instead.
    """
    if not out.exists():
        return
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; --out takes a results file (.jsonl)")
    target = out.resolve()
    if any(Path(p).resolve() == target for p in paths):
        raise ConfigError(f"{out}: --out is one of the inputs; give another results file")
    _result_lines(out)  # raises unless every line is a JSON object


def _result_lines(out: Path) -> list[dict]:
    """The complete JSON lines of `out`, in order. A last line cut short by a kill is removed
    from the file, so appending starts clean.

    Raises:
        ConfigError: `out` is not a callqa results file (never appended to, never cut).
    """
    if not out.is_file():
        return []
    data = out.read_bytes()
    cut = data.rfind(b"\n") + 1
    lines: list[dict] = []
    for number, raw in enumerate(data[:cut].splitlines(), 1):
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            raise ConfigError(f"{out}: not a callqa results file (line {number} is not a JSON "
                              "object); give another --out or move that file away")  # fmt: skip
        lines.append(line)
    if cut < len(data):
        if not lines and not data.lstrip().startswith(b"{"):
            raise ConfigError(f"{out}: not a callqa results file; give another --out")
        logger.warning("%s: dropping a last line cut short by an interrupted run", out)
        with open(out, "r+b") as f:
            f.truncate(cut)
    return lines


def _previous_line(done: dict[tuple, dict], path: Path) -> dict | None:
    """The line for this input path: its content's call_id and its path (a copy of a scored
    recording under another name is an input of its own), or an error line for the path."""
    if not done:
        return None
    try:
        found = done.get((content_id(path), str(path)))
    except OSError:
        found = None
    return found or done.get((None, str(path)))


def _check_samples(audio, path: Path, limits: ValidateConfig) -> None:
    """The input limits `callqa validate` applies, checked on the decoded samples."""
    name = Path(path).name
    if not np.isfinite(audio.samples).all():
        raise AudioError("nan_samples", f"{name}: the audio holds NaN or infinite samples")
    if audio.duration_s < limits.min_duration_s:
        raise AudioError(
            "too_short",
            f"{name}: {audio.duration_s:.3f} s is shorter than validate.min_duration_s "
            f"({limits.min_duration_s:g} s)",
        )
    if audio.sample_rate_hz < limits.min_sample_rate_hz:
        raise AudioError(
            "sample_rate_too_low",
            f"{name}: {audio.sample_rate_hz} Hz is below validate.min_sample_rate_hz "
            f"({limits.min_sample_rate_hz} Hz)",
        )
    if audio.channels > limits.max_channels:
        raise AudioError(
            "too_many_channels",
            f"{name}: {audio.channels} channels, more than validate.max_channels "
            f"({limits.max_channels}); export it as mono or agent/customer stereo",
        )


def _check_speech(speech: dict[str, list], path: Path, limits: ValidateConfig) -> None:
    """Raise `no_speech` when the voice detector finds less than validate.min_speech_s."""
    from callqa.audio.metrics import merge_intervals, total_s

    total = total_s(merge_intervals([iv for ivs in speech.values() for iv in ivs]))
    if total < limits.min_speech_s:
        raise AudioError(
            "no_speech",
            f"{Path(path).name}: holds no speech (the voice detector finds {total:.1f} s, less "
            f"than validate.min_speech_s = {limits.min_speech_s:g} s)",
        )


def _error(path: Path, code: str, message: str, call_id: str | None = None) -> QAError:
    if call_id is None:
        try:
            call_id = content_id(path) if Path(path).is_file() else None
        except OSError:
            call_id = None
    return QAError(path=str(path), call_id=call_id, error=ErrorInfo(code=code, message=message))
