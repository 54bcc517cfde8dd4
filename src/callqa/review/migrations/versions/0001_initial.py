"""review store: scored calls, verdicts, reviews, corrections, users

Revision ID: 0001
Revises:
Create Date: 2026-12-02 15:25:46.278708
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scored_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("audio_sha256", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("scored_at", sa.DateTime(), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=True),
        sa.Column("model_version", sa.String(length=300), nullable=False),
        sa.Column("scorecard_sha256", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("n_failed", sa.Integer(), nullable=False),
        sa.Column("critical_failed", sa.Boolean(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("result_json", sa.Text(), nullable=False),
        sa.Column("audio_path", sa.Text(), nullable=True),
        sa.Column("report_path", sa.Text(), nullable=True),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("in_random_share", sa.Boolean(), nullable=False),
        sa.Column("reviewed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("call_id", "model_version", "scorecard_sha256", name="uq_scored_call"),
    )
    with op.batch_alter_table("scored_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scored_calls_agent"), ["agent"], unique=False)
        batch_op.create_index(batch_op.f("ix_scored_calls_call_id"), ["call_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_scored_calls_critical_failed"), ["critical_failed"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_scored_calls_model_version"), ["model_version"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_scored_calls_scored_at"), ["scored_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_scored_calls_score"), ["score"], unique=False)
        batch_op.create_index(
            "ix_scored_queue", ["reviewed", "in_random_share", "priority"], unique=False
        )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=300), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "check_verdicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scored_call_id", sa.Integer(), nullable=False),
        sa.Column("check_id", sa.String(length=100), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("failed", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("evidence_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["scored_call_id"], ["scored_calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scored_call_id", "check_id", name="uq_verdict"),
    )
    with op.batch_alter_table("check_verdicts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_check_verdicts_check_id"), ["check_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_check_verdicts_failed"), ["failed"], unique=False)

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scored_call_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("check_id", sa.String(length=100), nullable=False),
        sa.Column("reviewer", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("system_answer", sa.Boolean(), nullable=True),
        sa.Column("system_score", sa.Float(), nullable=True),
        sa.Column("human_answer", sa.String(length=8), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("model_version", sa.String(length=300), nullable=False),
        sa.Column("scorecard_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["scored_call_id"], ["scored_calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reviews_call_id"), ["call_id"], unique=False)
        batch_op.create_index(
            "ix_reviews_latest", ["scored_call_id", "check_id", "id"], unique=False
        )

    op.create_table(
        "transcript_corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scored_call_id", sa.Integer(), nullable=False),
        sa.Column("segment_index", sa.Integer(), nullable=False),
        sa.Column("original_text", sa.Text(), nullable=False),
        sa.Column("corrected_text", sa.Text(), nullable=False),
        sa.Column("reviewer", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["scored_call_id"], ["scored_calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("transcript_corrections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_transcript_corrections_scored_call_id"), ["scored_call_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("transcript_corrections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transcript_corrections_scored_call_id"))

    op.drop_table("transcript_corrections")
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_reviews_latest")
        batch_op.drop_index(batch_op.f("ix_reviews_call_id"))

    op.drop_table("reviews")
    with op.batch_alter_table("check_verdicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_check_verdicts_failed"))
        batch_op.drop_index(batch_op.f("ix_check_verdicts_check_id"))

    op.drop_table("check_verdicts")
    op.drop_table("users")
    with op.batch_alter_table("scored_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_scored_queue")
        batch_op.drop_index(batch_op.f("ix_scored_calls_score"))
        batch_op.drop_index(batch_op.f("ix_scored_calls_scored_at"))
        batch_op.drop_index(batch_op.f("ix_scored_calls_model_version"))
        batch_op.drop_index(batch_op.f("ix_scored_calls_critical_failed"))
        batch_op.drop_index(batch_op.f("ix_scored_calls_call_id"))
        batch_op.drop_index(batch_op.f("ix_scored_calls_agent"))

    op.drop_table("scored_calls")
