"""Records passed between stages: words, segments, checks and the `callqa score` result.

`docs/qa_result.schema.json` is generated from `QAResult` and `QAError` (see `json_schema()`);
a test fails when the file is stale.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.json_schema import SkipJsonSchema

SCHEMA_VERSION = 1
# Role audio (VAD, ASR, diarization, metrics, reports) is mono float32 at this rate.
SAMPLE_RATE_HZ = 16000
Role = Literal["agent", "customer"]
EvidenceRole = Literal["agent", "customer", "call"]
Probability = Annotated[float, Field(ge=0, le=1)]
CHECK_IDS = [
    "greeting",
    "identity_verification",
    "recording_disclosure",
    "closing",
    "forbidden_language",
    "dead_air",
    "overtalk",
    "agent_speech_rate",
]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _absent_when_none(value: object) -> bool:
    return value is None


def optional() -> Any:
    """A field that is left out of the JSON when None, so lines without it stay as they were;
    the schema shows it as optional, never null (annotate it `X | SkipJsonSchema[None]`)."""
    return Field(None, exclude_if=_absent_when_none)


class Word(Record):
    word: str
    start: float
    end: float
    probability: float | None = None


class Segment(Record):
    """One stretch of one role's speech with its transcript."""

    role: Role
    start: float
    end: float
    text: str
    words: list[Word] = []


class Evidence(Record):
    start: float
    end: float
    role: EvidenceRole
    text: str
    # The trained model's probability for the check's intent (`model` checks only).
    probability: Probability | SkipJsonSchema[None] = optional()


class CheckResult(Record):
    id: str
    passed: bool | None  # True = compliant; None = not evaluated (e.g. overtalk on mono)
    score: float = Field(ge=0, le=1)
    evidence: list[Evidence] = []
    detail: str = ""


class AsrInfo(Record):
    backend: str
    model: str


class ScorecardInfo(Record):
    path: str
    sha256: str


class RoleEmotion(Record):
    label: str | None  # None: the role has no speech
    scores: dict[str, float]


class CallEmotion(Record):
    agent: RoleEmotion
    customer: RoleEmotion


class ModelInfo(Record):
    """The trained model a result used: a local directory (`path`) or a registry `uri`."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["path"]}, {"required": ["uri"]}]}
    )
    path: str | SkipJsonSchema[None] = optional()
    uri: str | SkipJsonSchema[None] = optional()
    sha256: str

    @model_validator(mode="after")
    def _one_location(self) -> ModelInfo:
        if (self.path is None) == (self.uri is None):
            raise ValueError("a model is named by exactly one of `path` and `uri`")
        return self


class QAResult(Record):
    schema_version: Literal[1] = SCHEMA_VERSION
    call_id: str
    path: str
    duration_s: float
    channels: int
    sample_rate_hz: int
    roles_from: Literal["channels", "diarization"]
    segments: list[Segment]
    # {"call": {...}, "agent": {...}, "customer": {...}}; undefined values are null.
    metrics: dict[str, dict[str, Any]]
    checks: list[CheckResult]
    score: float = Field(ge=0, le=100)
    critical_fail: bool
    asr: AsrInfo
    scorecard: ScorecardInfo
    # Present only when a trained model was used.
    emotion: CallEmotion | SkipJsonSchema[None] = optional()
    model: ModelInfo | SkipJsonSchema[None] = optional()


class ErrorInfo(Record):
    code: str
    message: str


class QAError(Record):
    schema_version: Literal[1] = SCHEMA_VERSION
    path: str
    call_id: str | None
    error: ErrorInfo


def round_times(obj: Any, ndigits: int = 3) -> Any:
    """Round every float in a nested structure (times are seconds, 3 decimals)."""
    if isinstance(obj, float):
        return round(obj, ndigits)
    if isinstance(obj, dict):
        return {k: round_times(v, ndigits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [round_times(v, ndigits) for v in obj]
    return obj


def json_schema() -> dict:
    """JSON Schema of one `callqa score` output line (a result or an error)."""
    schema = TypeAdapter(QAResult | QAError).json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "callqa score output line"
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


class ApiError(Exception):
    """An HTTP answer other than 200 (`{"error": {"code", "message"}}`, as QAError): its
    message is ours, never the client's input. Raised by the scoring API and the review app."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers
