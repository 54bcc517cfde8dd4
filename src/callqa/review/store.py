"""The review database: scored calls in, reviewers' answers and transcript fixes out.

`ReviewStore(url)` is the one way in (SQLite file by default, PostgreSQL in the compose stack);
Alembic migrations shipped in `review/migrations/` create and upgrade the schema (`upgrade()`).

Human label. A review answers "is the system's answer for this check right?":
    agree    -> truth = the system's answer (`passed` as stored in the review row)
    disagree -> truth = the opposite of the system's answer
    na       -> no label (the check does not apply, or the reviewer cannot tell): excluded
Reviews are append-only; for each (scored call, check) the latest row (highest id) counts.
`human_label()` turns a review row into that truth; `latest_reviews()` gives the rows that count.

Example:
    >>> store = ReviewStore("sqlite:///data/review/review.db")
    >>> store.upgrade()
    >>> sid = store.add_scored(result_dict, source="score", audio_path="calls/a.wav")
    >>> store.add_review(sid, "greeting", reviewer="ana", human_answer="disagree")
    >>> [human_label(r) for r in store.latest_reviews(scored_call_id=sid)]
    [False]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from callqa.review.models import (
    HUMAN_ANSWERS,
    ROLES,
    CheckVerdict,
    Review,
    ScoredCall,
    TranscriptCorrection,
    User,
    utcnow,
)
from callqa.review.verdicts import in_random_share, model_version, priority, verdicts

__all__ = [
    "CheckVerdict", "QueueFilters", "QueuePage", "Review", "ReviewStore", "ScoredCall",
    "TranscriptCorrection", "User", "human_label",
]  # fmt: skip

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ORDERS = ("teach", "newest", "oldest", "score")
MAX_PAGE_SIZE = 200
# How long a SQLite write waits for another writer's lock before "database is locked": one
# value for every connection (the web app answers 503 db_busy after it, scoring logs and goes on).
BUSY_TIMEOUT_S = 10.0


def human_label(review: Review) -> bool | None:
    """The true `passed` value of the check by the reviewer's answer (None: `na`, excluded)."""
    if review.human_answer == "na" or review.system_answer is None:
        return None
    return review.system_answer if review.human_answer == "agree" else not review.system_answer


@dataclass(frozen=True)
class QueueFilters:
    """Which scored calls the queue shows; None means "any"."""

    failed: bool | None = None  # some check failed
    critical: bool | None = None  # a critical check failed
    check_id: str | None = None  # this check failed
    agent: str | None = None
    date_from: datetime | None = None  # scored at or after
    date_to: datetime | None = None  # scored before
    model_version: str | None = None
    reviewed: bool | None = None
    random_share: bool | None = None  # only (or never) the calls drawn into the random share


@dataclass
class QueuePage:
    rows: list[ScoredCall]
    total: int
    page: int
    page_size: int
    filters: QueueFilters = field(default_factory=QueueFilters)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


class ReviewStore:
    """Scored calls, per-check verdicts, reviews, transcript corrections and users."""

    def __init__(self, url: str, random_seed: int = 0, random_share: float = 0.1):
        """
        Args:
            url: SQLAlchemy URL, e.g. `sqlite:///data/review/review.db` (the folder is made)
                or `postgresql+psycopg://user:pw@host/db`.
            random_seed, random_share: which calls are drawn into the random share (see
                `verdicts.in_random_share`); fixed per deployment so shares stay comparable.
        """
        self.url, self.random_seed, self.random_share = url, random_seed, random_share
        self.engine = _engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._session()

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to `revision` with the shipped Alembic migrations."""
        from alembic import command

        with self.engine.begin() as conn:
            cfg = alembic_config(conn)
            command.upgrade(cfg, revision)

    def downgrade(self, revision: str = "base") -> None:
        from alembic import command

        with self.engine.begin() as conn:
            command.downgrade(alembic_config(conn), revision)

    # ------------------------------------------------------------------ scored calls
    def add_scored(
        self,
        result: dict,
        source: str,
        audio_path: str | Path | None = None,
        report_path: str | Path | None = None,
        *,
        agent: str | None = None,
        version: str | None = None,
        critical_checks: Iterable[str] = (),
        audio_sha256: str | None = None,
    ) -> int:
        """Store one QA result (a `callqa score` line as a dict); returns its row id.

        The same call scored again by the same model and scorecard keeps its first row (its
        reviews stay attached), so re-running `callqa score` adds nothing. `audio_path` and
        `report_path` are server-side paths the scoring code wrote; the web app serves audio
        only from them, looked up by row id. `version` defaults to the result's model.
        """
        rows = verdicts(result, set(critical_checks))
        version = version or model_version(result)
        sha = result["scorecard"]["sha256"]
        failed = [v for v in rows if v.passed is False]
        call = ScoredCall(
            call_id=result["call_id"],
            audio_sha256=audio_sha256,
            source=source,
            scored_at=utcnow(),
            agent=agent,
            model_version=version,
            scorecard_sha256=sha,
            score=float(result.get("score", 0.0)),
            passed=not failed,
            n_failed=len(failed),
            critical_failed=bool(result.get("critical_fail")),
            duration_s=float(result.get("duration_s", 0.0)),
            result_json=json.dumps(result, separators=(",", ":")),
            audio_path=str(Path(audio_path).resolve()) if audio_path else None,
            report_path=str(Path(report_path).resolve()) if report_path else None,
            priority=priority(rows),
            in_random_share=in_random_share(result["call_id"], self.random_seed, self.random_share),
        )
        with self.session() as s:
            existing = _find_scored(s, call.call_id, version, sha)
            if existing is not None:
                return existing
            s.add(call)
            s.flush()
            for v in rows:
                s.add(CheckVerdict(
                    scored_call_id=call.id, check_id=v.check_id, passed=v.passed,
                    failed=v.passed is False, score=v.score, probability=v.probability,
                    threshold=v.threshold, method=v.method, critical=v.critical,
                    evidence_json=v.evidence_json,
                ))  # fmt: skip
            try:
                s.commit()
            except IntegrityError:  # another writer stored the same call meanwhile
                s.rollback()
                return _find_scored(s, call.call_id, version, sha)
            return call.id

    def get_scored(self, scored_call_id: int) -> ScoredCall | None:
        with self.session() as s:
            return s.get(ScoredCall, scored_call_id)

    def verdicts(self, scored_call_id: int) -> list[CheckVerdict]:
        """The system's per-check answers for one scored call, in the result's check order."""
        with self.session() as s:
            q = select(CheckVerdict).where(CheckVerdict.scored_call_id == scored_call_id)
            return list(s.scalars(q.order_by(CheckVerdict.id)))

    def queue(
        self,
        filters: QueueFilters | None = None,
        page: int = 1,
        page_size: int = 50,
        order: str = "teach",
    ) -> QueuePage:
        """One page of scored calls.

        Orders: `teach` (default): unreviewed first, then the random share (so it gets
        reviewed whatever the priorities), then by priority (model probabilities near a
        threshold, rules and model disagreeing), newest first among equals; `newest`,
        `oldest`; `score` (lowest score first).
        """
        filters = filters or QueueFilters()
        if order not in ORDERS:
            raise ValueError(f"order {order!r}: use one of {', '.join(ORDERS)}")
        page, page_size = max(1, page), min(max(1, page_size), MAX_PAGE_SIZE)
        where = _conditions(filters)
        C = ScoredCall
        by = {
            "teach": (C.reviewed.asc(), C.in_random_share.desc(), C.priority.desc(), C.id.desc()),
            "newest": (C.scored_at.desc(), C.id.desc()),
            "oldest": (C.scored_at.asc(), C.id.asc()),
            "score": (C.score.asc(), C.id.desc()),
        }[order]
        with self.session() as s:
            total = s.scalar(select(func.count()).select_from(C).where(*where)) or 0
            q = select(C).where(*where).order_by(*by)
            rows = list(s.scalars(q.offset((page - 1) * page_size).limit(page_size)))
        return QueuePage(rows, total, page, page_size, filters)

    def next_in_queue(self, after_id: int, filters: QueueFilters | None = None) -> int | None:
        """The id of the first unreviewed call in `teach` order other than `after_id`."""
        f = filters or QueueFilters()
        f = QueueFilters(**{**f.__dict__, "reviewed": False})
        C = ScoredCall
        with self.session() as s:
            q = select(C.id).where(*_conditions(f), C.id != after_id)
            q = q.order_by(C.in_random_share.desc(), C.priority.desc(), C.id.desc()).limit(1)
            return s.scalar(q)

    def model_versions(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(ScoredCall.model_version).distinct().limit(100)))

    # ------------------------------------------------------------------ reviews
    def add_review(
        self,
        scored_call_id: int,
        check_id: str,
        reviewer: str,
        human_answer: str,
        comment: str = "",
    ) -> int:
        """Append one review; the system's answer, score, model version and scorecard are
        copied from the stored verdict so the row stands on its own. Returns its id."""
        if human_answer not in HUMAN_ANSWERS:
            raise ValueError(
                f"human_answer {human_answer!r}: use one of {', '.join(HUMAN_ANSWERS)}"
            )
        with self.session() as s:
            call = s.get(ScoredCall, scored_call_id)
            v = s.scalar(select(CheckVerdict).where(
                CheckVerdict.scored_call_id == scored_call_id, CheckVerdict.check_id == check_id
            ))  # fmt: skip
            if call is None or v is None:
                raise LookupError(f"scored call {scored_call_id} has no check {check_id!r}")
            row = Review(
                scored_call_id=scored_call_id, call_id=call.call_id, check_id=check_id,
                reviewer=reviewer, created_at=utcnow(), system_answer=v.passed,
                system_score=v.probability if v.probability is not None else v.score,
                human_answer=human_answer, comment=comment or "",
                model_version=call.model_version, scorecard_sha256=call.scorecard_sha256,
            )  # fmt: skip
            s.add(row)
            if not call.reviewed:
                s.execute(update(ScoredCall).where(ScoredCall.id == call.id).values(reviewed=True))
            s.commit()
            return row.id

    def latest_reviews(
        self,
        scored_call_id: int | None = None,
        *,
        model_version: str | None = None,
        reviewer: str | None = None,
        per_call: bool = False,
    ) -> list[Review]:
        """The review that counts for each (scored call, check): the latest row (highest id),
        optionally for one call, one model version or one reviewer's latest answers.
        `per_call`: for each (call id, check) across every model version that scored the call
        (what people say about the call itself: labels, the agreement gate)."""
        with self.session() as s:
            by = Review.call_id if per_call else Review.scored_call_id
            latest = select(func.max(Review.id)).group_by(by, Review.check_id)
            if scored_call_id is not None:
                latest = latest.where(Review.scored_call_id == scored_call_id)
            if model_version is not None:
                latest = latest.where(Review.model_version == model_version)
            if reviewer is not None:
                latest = latest.where(Review.reviewer == reviewer)
            q = select(Review).where(Review.id.in_(latest)).order_by(Review.id)
            return list(s.scalars(q))

    def review_history(self, scored_call_id: int) -> list[Review]:
        """Every review row of one call, oldest first (the audit trail)."""
        with self.session() as s:
            q = select(Review).where(Review.scored_call_id == scored_call_id)
            return list(s.scalars(q.order_by(Review.id)))

    # ------------------------------------------------------------------ transcript fixes
    def add_correction(
        self, scored_call_id: int, segment_index: int, corrected_text: str, reviewer: str
    ) -> int:
        """Append a correction of one transcript line (index into the result's `segments`)."""
        with self.session() as s:
            call = s.get(ScoredCall, scored_call_id)
            segments = json.loads(call.result_json).get("segments", []) if call else []
            if not 0 <= segment_index < len(segments):
                raise LookupError(f"scored call {scored_call_id} has no segment {segment_index}")
            row = TranscriptCorrection(
                scored_call_id=scored_call_id, segment_index=segment_index,
                original_text=segments[segment_index].get("text", ""),
                corrected_text=corrected_text, reviewer=reviewer, created_at=utcnow(),
            )  # fmt: skip
            s.add(row)
            s.commit()
            return row.id

    def corrections(
        self, scored_call_id: int | None = None, latest_only: bool = True
    ) -> list[TranscriptCorrection]:
        """Transcript corrections (the latest per segment unless `latest_only=False`)."""
        T = TranscriptCorrection
        with self.session() as s:
            q = select(T)
            if latest_only:
                q = q.where(
                    T.id.in_(select(func.max(T.id)).group_by(T.scored_call_id, T.segment_index))
                )
            if scored_call_id is not None:
                q = q.where(T.scored_call_id == scored_call_id)
            return list(s.scalars(q.order_by(T.id)))

    # ------------------------------------------------------------------ users
    def add_user(self, username: str, password: str, role: str = "reviewer") -> int:
        """Create a local user (argon2 hash); raises ValueError when the name is taken."""
        from callqa.review.auth import hash_password

        if role not in ROLES:
            raise ValueError(f"role {role!r}: use one of {', '.join(ROLES)}")
        printable = 0 < len(username) <= 100 and username.isprintable()
        if not printable or username.strip() != username:
            raise ValueError("user name: 1-100 printable characters, no leading or trailing spaces")
        with self.session() as s:
            taken = _same_name(s, username)
            if taken is not None:  # names differ in case only: one person, or a typo
                raise ValueError(f"user {taken!r} exists already (names are not case-sensitive)")
            user = User(username=username, password_hash=hash_password(password), role=role)
            s.add(user)
            try:
                s.commit()
            except IntegrityError:
                raise ValueError(f"user {username!r} exists already") from None
            return user.id

    def set_password(self, username: str, password: str) -> None:
        from callqa.review.auth import hash_password

        with self.session() as s:
            n = s.execute(update(User).where(User.username == username).values(
                password_hash=hash_password(password)
            )).rowcount  # fmt: skip
            s.commit()
        if not n:
            raise LookupError(f"no user {username!r}")

    def get_user(self, username: str) -> User | None:
        with self.session() as s:
            return s.scalar(select(User).where(User.username == username))

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password matches, else None (same work either way)."""
        from callqa.review.auth import verify_password

        user = self.get_user(username)
        ok = verify_password(user.password_hash if user else None, password)
        return user if ok else None


def _find_scored(s: Session, call_id: str, version: str, sha: str) -> int | None:
    return s.scalar(select(ScoredCall.id).where(
        ScoredCall.call_id == call_id, ScoredCall.model_version == version,
        ScoredCall.scorecard_sha256 == sha,
    ))  # fmt: skip


def _same_name(s: Session, username: str) -> str | None:
    """An existing user name equal to `username` but for case (compared here: SQLite's lower()
    knows ASCII only)."""
    wanted = username.casefold()
    return next((n for n in s.scalars(select(User.username)) if n.casefold() == wanted), None)


def _conditions(f: QueueFilters) -> list:
    C, where = ScoredCall, []
    if f.failed is not None:
        where.append(C.n_failed > 0 if f.failed else C.n_failed == 0)
    if f.critical is not None:
        where.append(C.critical_failed.is_(f.critical))
    if f.check_id:
        failed = select(CheckVerdict.scored_call_id).where(
            CheckVerdict.check_id == f.check_id, CheckVerdict.failed.is_(True)
        )
        where.append(C.id.in_(failed))
    if f.agent:
        where.append(C.agent == f.agent)
    if f.date_from is not None:
        where.append(C.scored_at >= f.date_from)
    if f.date_to is not None:
        where.append(C.scored_at < f.date_to)
    if f.model_version:
        where.append(C.model_version == f.model_version)
    if f.reviewed is not None:
        where.append(C.reviewed.is_(f.reviewed))
    if f.random_share is not None:
        where.append(C.in_random_share.is_(f.random_share))
    return where


def _engine(url: str) -> Engine:
    """An engine; SQLite gets its folder made, foreign keys on and WAL (readers never block
    the scoring writer)."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # hide_parameters: an error's message never carries the values (a reviewer's text) to a log
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"), hide_parameters=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cur.close()

    return engine


def alembic_config(connection=None):
    """Alembic's Config with the shipped migrations; `connection` is handed to env.py."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg
