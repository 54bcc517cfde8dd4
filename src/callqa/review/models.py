"""SQLAlchemy 2.0 tables of the review database (the schema Alembic's migrations create).

Scored calls and their per-check verdicts are what the system said; reviews and transcript
corrections are what people said, append-only (a change is a new row, the latest one counts).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

HUMAN_ANSWERS = ("agree", "disagree", "na")
ROLES = ("reviewer", "admin")
METHODS = ("rules", "model", "rules+model")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # stored naive, always UTC


class Base(DeclarativeBase):
    pass


class ScoredCall(Base):
    """One scored call as the system saw it: one row per (call, model version, scorecard)."""

    __tablename__ = "scored_calls"
    __table_args__ = (
        UniqueConstraint("call_id", "model_version", "scorecard_sha256", name="uq_scored_call"),
        Index("ix_scored_queue", "reviewed", "in_random_share", "priority"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    audio_sha256: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))  # score | inbox | api | ...
    scored_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    agent: Mapped[str | None] = mapped_column(String(200), index=True)
    model_version: Mapped[str] = mapped_column(String(300), index=True)
    scorecard_sha256: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float, index=True)  # the queue sorts by it
    passed: Mapped[bool] = mapped_column(Boolean)  # no check failed
    n_failed: Mapped[int] = mapped_column(Integer)
    critical_failed: Mapped[bool] = mapped_column(Boolean, index=True)
    duration_s: Mapped[float] = mapped_column(Float)
    result_json: Mapped[str] = mapped_column(Text)  # the QA result line, as written
    # Server-side paths, written by the scoring code; never taken from a client.
    audio_path: Mapped[str | None] = mapped_column(Text)
    report_path: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[float] = mapped_column(Float, default=0.0)  # higher = review first
    in_random_share: Mapped[bool] = mapped_column(Boolean, default=False)
    # Denormalised from `reviews` (set on the first review) so the queue needs no join.
    reviewed: Mapped[bool] = mapped_column(Boolean, default=False)


class CheckVerdict(Base):
    """The system's answer for one check of one scored call."""

    __tablename__ = "check_verdicts"
    __table_args__ = (UniqueConstraint("scored_call_id", "check_id", name="uq_verdict"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scored_call_id: Mapped[int] = mapped_column(ForeignKey("scored_calls.id", ondelete="CASCADE"))
    check_id: Mapped[str] = mapped_column(String(100), index=True)
    passed: Mapped[bool | None] = mapped_column(Boolean)  # None: not evaluated
    failed: Mapped[bool] = mapped_column(Boolean, index=True)  # passed is False (for filters)
    score: Mapped[float] = mapped_column(Float)  # the check's score in [0, 1]
    probability: Mapped[float | None] = mapped_column(Float)  # the model's, when it decided
    threshold: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(16))  # rules | model | rules+model
    critical: Mapped[bool] = mapped_column(Boolean, default=False)
    evidence_json: Mapped[str] = mapped_column(Text, default="[]")


class Review(Base):
    """One reviewer's answer on one check; append-only, the latest row per (call, check) counts."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_latest", "scored_call_id", "check_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scored_call_id: Mapped[int] = mapped_column(ForeignKey("scored_calls.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    check_id: Mapped[str] = mapped_column(String(100))
    reviewer: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    system_answer: Mapped[bool | None] = mapped_column(Boolean)  # the check's `passed`
    system_score: Mapped[float | None] = mapped_column(Float)
    human_answer: Mapped[str] = mapped_column(String(8))  # agree | disagree | na
    comment: Mapped[str] = mapped_column(Text, default="")
    model_version: Mapped[str] = mapped_column(String(300))
    scorecard_sha256: Mapped[str] = mapped_column(String(64))


class TranscriptCorrection(Base):
    """A reviewer's fix of one transcript line; append-only, the latest per segment counts."""

    __tablename__ = "transcript_corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scored_call_id: Mapped[int] = mapped_column(
        ForeignKey("scored_calls.id", ondelete="CASCADE"), index=True
    )
    segment_index: Mapped[int] = mapped_column(Integer)  # index into the result's `segments`
    original_text: Mapped[str] = mapped_column(Text)
    corrected_text: Mapped[str] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class User(Base):
    """A local reviewer account (`callqa review add-user`)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(16))  # reviewer | admin
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
