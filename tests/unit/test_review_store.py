"""The review store on real databases: SQLite, and PostgreSQL from a throwaway cluster made
here with the server's own `initdb` / `pg_ctl` (skipped, with the reason, where there is none)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from review_data import make_result

from callqa.review.models import utcnow
from callqa.review.store import QueueFilters, ReviewStore, human_label
from callqa.review.verdicts import in_random_share, model_figures, priority, verdicts

PG_BIN = Path(os.environ.get("CALLQA_PG_BIN", "/usr/local/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server in a temp dir for this module; its URL (unix socket, trust auth)."""
    initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
    if not (initdb.is_file() and pg_ctl.is_file()):
        pytest.skip(f"no PostgreSQL binaries in {PG_BIN} (set CALLQA_PG_BIN)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    # PostgreSQL refuses to run as root: run it as nobody when the tests are root.
    as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    prefix = as_user if os.geteuid() == 0 and shutil.which("setpriv") else []
    tmp = Path(tempfile.mkdtemp(prefix="callqa-pg-"))
    if prefix:
        shutil.chown(tmp, "nobody", "nogroup")
    port, data = _free_port(), tmp / "data"
    opts = f"-p {port} -k {tmp} -c listen_addresses='' -c fsync=off"
    try:
        subprocess.run([*prefix, str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8"], check=True, capture_output=True, timeout=120)  # fmt: skip
        subprocess.run([*prefix, str(pg_ctl), "-D", str(data), "-o", opts, "-l",
                        str(tmp / "log"), "-w", "start"], check=True, capture_output=True,
                       timeout=120)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"a PostgreSQL cluster could not be started here: {err}")
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={tmp}&port={port}"
    finally:
        subprocess.run([*prefix, str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> ReviewStore:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'review.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = ReviewStore(url, random_seed=0, random_share=0.5)
    s.downgrade("base")  # a PostgreSQL cluster is shared by the module's tests
    s.upgrade()
    yield s
    s.engine.dispose()


def test_migrations_up_and_down(store):
    tables = {"scored_calls", "check_verdicts", "reviews", "transcript_corrections", "users"}
    assert tables <= set(sa.inspect(store.engine).get_table_names())
    store.downgrade("base")
    assert not tables & set(sa.inspect(store.engine).get_table_names())
    store.upgrade()
    store.upgrade()  # at head already: nothing to do
    assert tables <= set(sa.inspect(store.engine).get_table_names())


def test_add_scored_keeps_the_system_answer_and_is_idempotent(store):
    r = make_result("a" * 16, p_greeting=0.55, fail=("forbidden_language",))
    sid = store.add_scored(r, "score", critical_checks=["forbidden_language"])
    assert store.add_scored(r, "score") == sid  # same call, model and scorecard: one row
    call = store.get_scored(sid)
    assert (call.n_failed, call.critical_failed, call.passed) == (1, True, False)
    assert call.model_version.startswith("models/callqa-qa@")
    by_id = {v.check_id: v for v in store.verdicts(sid)}
    assert len(by_id) == 8
    g = by_id["greeting"]
    assert (g.method, g.probability, g.threshold, g.passed) == ("model", 0.55, 0.5, True)
    assert by_id["forbidden_language"].critical and by_id["forbidden_language"].failed
    # the same call scored by another model version is a second row
    other = {**r, "model": {"path": "models/v2", "sha256": "ef" * 32}}
    assert store.add_scored(other, "score") != sid


def test_reviews_are_append_only_and_the_latest_counts(store):
    sid = store.add_scored(make_result("b" * 16), "api")
    store.add_review(sid, "greeting", "ana", "agree")
    store.add_review(sid, "greeting", "ana", "disagree", "no greeting at all")
    store.add_review(sid, "closing", "bo", "na")
    assert len(store.review_history(sid)) == 3
    latest = {r.check_id: r for r in store.latest_reviews(scored_call_id=sid)}
    g = latest["greeting"]
    assert (g.human_answer, g.comment, g.system_answer) == ("disagree", "no greeting at all", True)
    assert g.system_score == pytest.approx(0.9) and g.scorecard_sha256 == "ab" * 32
    assert human_label(g) is False  # disagree with "passed": truth is "failed"
    assert human_label(latest["closing"]) is None  # n/a: excluded
    assert store.get_scored(sid).reviewed
    with pytest.raises(ValueError):
        store.add_review(sid, "greeting", "ana", "maybe")
    with pytest.raises(LookupError):
        store.add_review(sid, "no_such_check", "ana", "agree")


def test_transcript_corrections(store):
    sid = store.add_scored(make_result("c" * 16), "score")
    store.add_correction(sid, 1, "hi I have a question", "ana")
    store.add_correction(sid, 1, "Hi, I have a question.", "bo")
    (fix,) = store.corrections(sid)
    assert (fix.original_text, fix.corrected_text, fix.reviewer) == (
        "hi i have a question", "Hi, I have a question.", "bo"
    )  # fmt: skip
    assert len(store.corrections(sid, latest_only=False)) == 2
    with pytest.raises(LookupError):
        store.add_correction(sid, 99, "x", "ana")


def test_queue_filters_order_and_paging(store):
    near = store.add_scored(make_result("d" * 16, p_greeting=0.52), "score")  # near threshold
    far = store.add_scored(make_result("e" * 16, p_greeting=0.99), "score")
    crit = store.add_scored(make_result("f" * 16, fail=("forbidden_language",)), "score")
    rules = store.add_scored(make_result("0" * 16, model=False, fail=("dead_air",)), "score")
    ids = [c.id for c in store.queue(QueueFilters(random_share=False)).rows]
    ids += [c.id for c in store.queue(QueueFilters(random_share=True)).rows]
    assert sorted(ids) == sorted([near, far, crit, rules])
    share = {c.id for c in store.queue(QueueFilters(random_share=True)).rows}
    teach = [c.id for c in store.queue().rows]
    assert teach[: len(share)] == [i for i in teach if i in share]  # the random share first
    rest = [i for i in teach if i not in share]
    prio = {c.id: c.priority for c in store.queue().rows}
    assert [prio[i] for i in rest] == sorted((prio[i] for i in rest), reverse=True)
    assert prio[near] > prio[far]
    assert {c.id for c in store.queue(QueueFilters(critical=True)).rows} == {crit}
    assert {c.id for c in store.queue(QueueFilters(check_id="dead_air")).rows} == {rules}
    assert {c.id for c in store.queue(QueueFilters(failed=False)).rows} == {near, far}
    assert {c.id for c in store.queue(QueueFilters(model_version="rules-only")).rows} == {rules}
    later = QueueFilters(date_from=utcnow() + timedelta(days=1))
    assert store.queue(later).total == 0
    store.add_review(far, "greeting", "ana", "agree")
    assert {c.id for c in store.queue(QueueFilters(reviewed=True)).rows} == {far}
    assert store.queue().rows[-1].id == far  # reviewed calls sink to the end
    p2 = store.queue(page=2, page_size=3)
    assert (p2.total, p2.pages, len(p2.rows)) == (4, 2, 1)
    assert store.next_in_queue(teach[0]) not in (teach[0], far)


def test_users(store):
    store.add_user("ana", "correct horse", "admin")
    with pytest.raises(ValueError):
        store.add_user("ana", "another one1", "reviewer")
    with pytest.raises(ValueError):
        store.add_user("bo", "short", "reviewer")
    assert store.authenticate("ana", "correct horse").role == "admin"
    assert store.authenticate("ana", "wrong horse") is None
    assert store.authenticate("nobody", "correct horse") is None
    store.set_password("ana", "battery staple")
    assert store.authenticate("ana", "battery staple") is not None
    assert "correct horse" not in store.get_user("ana").password_hash


def test_user_names_are_trimmed_printable_and_unique_without_case(store):
    store.add_user("ana", "correct horse")
    for bad in ("", " ", "\t", " ana2", "ana2 ", "an\na", "an\x1ba", "x" * 101):
        with pytest.raises(ValueError, match="no leading or trailing spaces"):
            store.add_user(bad, "correct horse")
    for twin in ("ANA", "Ana"):
        with pytest.raises(ValueError, match="'ana' exists already"):
            store.add_user(twin, "correct horse")
    store.add_user("Bo Li", "correct horse")  # inner spaces and capitals are fine
    assert store.authenticate("Bo Li", "correct horse") is not None


def test_a_locked_sqlite_write_waits_the_busy_timeout_and_hides_the_values(tmp_path, monkeypatch):
    """One busy timeout on every connection; the error (logged by `callqa score`) carries no
    bound values: a reviewer's text never reaches a log."""
    import sqlite3

    from callqa.review import store as store_module

    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
    store = ReviewStore(f"sqlite:///{tmp_path / 'review.db'}")
    store.upgrade()
    sid = store.add_scored(make_result("c" * 16), source="score")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 200
    holder = sqlite3.connect(tmp_path / "review.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sa.exc.OperationalError, match="database is locked") as err:
            store.add_correction(sid, 0, "PRIVATE-WORDS", "ana")
    finally:
        holder.rollback()
        holder.close()
    assert "PRIVATE" not in str(err.value) and "hidden" in str(err.value)


def test_verdict_figures_priority_and_random_share():
    assert model_figures("greeting p=0.81 >= threshold 0.50 (model) at 3.2 s") == (0.81, 0.5)
    assert model_figures("no segment with greeting p >= threshold 0.40 (scorecard); "
                         "highest 0.31") == (0.31, 0.4)  # fmt: skip
    assert model_figures("found 'hello'") == (None, None)
    near = verdicts(make_result("1" * 16, p_greeting=0.45))
    assert near[0].method == "rules+model" and not near[0].disagreement
    passed_by_model = verdicts(make_result("2" * 16, p_greeting=0.95))
    assert passed_by_model[0].disagreement  # rules found nothing, the model did
    assert priority(near) == pytest.approx(0.9)
    assert priority(verdicts(make_result("3" * 16, model=False))) == 0.0
    drawn = [in_random_share(f"{i:016x}", 7, 0.1) for i in range(4000)]
    assert 0.08 < sum(drawn) / len(drawn) < 0.12
    assert drawn == [in_random_share(f"{i:016x}", 7, 0.1) for i in range(4000)]


def test_migrations_match_the_models(store):
    """A model change without a migration shows up here (what `alembic check` reports)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from callqa.review.models import Base

    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
