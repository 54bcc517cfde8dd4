"""The review app inside `callqa serve`'s FastAPI app: log-in, CSRF, the queue and call pages,
audio and figures by row id, answers and corrections stored, the scoring API's token."""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from review_data import make_result, write_call

from callqa.config import ReviewConfig, ServeConfig
from callqa.mlops.serve import create_app
from callqa.review.sinks import api_recorder, file_recorder, open_store
from callqa.review.web import review_router

PASSWORD = "correct horse"


class Fixed:
    """A Loaded that answers every upload with the same valid result (no models)."""

    version = "7"

    def score_bytes(self, data, name, scorecard):
        return make_result("9" * 16, p_greeting=0.5, fail=("dead_air",), path=name)


class FixedSource:
    def current_version(self):
        return "7"

    def load(self, version):
        return Fixed()


@pytest.fixture
def env(tmp_path):
    cfg = ReviewConfig(
        db_url=f"sqlite:///{tmp_path / 'review.db'}", secret_file=tmp_path / "secret",
        uploads_dir=tmp_path / "uploads", figure_cache_dir=tmp_path / "figures",
        random_share=0.0,
    )  # fmt: skip
    store = open_store(cfg)
    store.add_user("ana", PASSWORD, "reviewer")
    audio = write_call(tmp_path / "call.wav")
    sid = store.add_scored(make_result("a" * 16, fail=("forbidden_language",)), "score", audio)
    app = create_app(
        FixedSource(), ServeConfig(reload_interval_s=0.2),
        routers=[review_router(store, cfg)], on_scored=api_recorder(store, cfg), api_token="tok",
    )  # fmt: skip
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, store, sid


def _login(client) -> str:
    page = client.get("/review/login?next=/review/")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/review/login", data={"username": "ana", "password": PASSWORD,
                                           "csrf": token, "next": "/review/"},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/review/"
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/review/").text).group(1)


def test_pages_need_a_login(env):
    client, _, sid = env
    r = client.get(f"/review/calls/{sid}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/review/login?next=")
    assert client.get(f"/review/calls/{sid}/audio").status_code == 403
    page = client.get("/review/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    bad = {"username": "ana", "password": "wrong horse", "csrf": token}
    assert client.post("/review/login", data=bad).status_code == 401
    forged = {"username": "ana", "password": PASSWORD, "csrf": "0" * 64}
    assert client.post("/review/login", data=forged).status_code == 403
    evil = {"username": "ana", "password": PASSWORD, "csrf": token, "next": "//evil.example/x"}
    r = client.post("/review/login", data=evil, follow_redirects=False)
    assert r.headers["location"] == "/review/"
    assert client.get("/review/", follow_redirects=False).status_code == 200  # logged in
    client.cookies.clear()
    client.cookies.set("callqa_review", "eyJ1IjoiYW5hIn0.forged.sig")
    assert client.get("/review/", follow_redirects=False).status_code == 303


def test_queue_and_call_page(env):
    client, store, sid = env
    _login(client)
    queue = client.get("/review/?critical=1&check=forbidden_language")
    assert queue.status_code == 200 and f'href="/review/calls/{sid}"' in queue.text
    assert "No calls match" in client.get("/review/?failed=0").text
    echoed = client.get("/review/?date_from=ECHOME-1&date_to=2026-01-01")
    assert echoed.status_code == 200 and "ECHOME" not in echoed.text and "2026-01-01" in echoed.text
    assert "script-src 'self'" in queue.headers["content-security-policy"]
    page = client.get(f"/review/calls/{sid}").text
    assert 'id="player"' in page and f"/review/calls/{sid}/audio" in page
    assert 'class="seg flagged"' in page and 'data-t="3.800"' in page  # evidence, seekable
    assert page.count('class="answers"') == 8 and "p=0.90 (threshold 0.50)" in page
    assert "/review/static/review.js" in page
    assert client.get("/review/static/review.js").text.count("keydown") == 1
    audio = client.get(f"/review/calls/{sid}/audio", headers={"Range": "bytes=0-99"})
    assert audio.status_code == 206 and len(audio.content) == 100
    png = client.get(f"/review/calls/{sid}/figure/agent.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert client.get(f"/review/calls/{sid}/figure/..%2Fsecret.png").status_code == 404
    assert client.get("/review/calls/999999").status_code == 404
    huge = "9" * 30  # beyond SQLite's integers: a 4xx, never a 500, and the app answers on
    for url in (f"/review/calls/{huge}", f"/review/calls/{huge}/audio",
                f"/review/calls/{huge}/figure/agent.png"):  # fmt: skip
        assert client.get(url).status_code in (404, 422)
    assert client.get(f"/review/?page={huge}").status_code == 200
    assert client.get(f"/review/calls/{sid}").status_code == 200


def test_answers_and_corrections_are_stored(env):
    client, store, sid = env
    csrf = _login(client)
    form = {"check": "greeting", "answer": "disagree", "comment": "no greeting", "csrf": csrf}
    assert client.post(f"/review/calls/{sid}/review", data={**form, "csrf": "x"}).status_code == 403
    r = client.post(f"/review/calls/{sid}/review", data=form, follow_redirects=False)
    assert r.status_code == 303
    r = client.post(f"/review/calls/{sid}/review", data={**form, "answer": "agree"},
                    headers={"X-Requested-With": "fetch"})  # fmt: skip
    assert r.json()["answer"] == "agree"
    assert client.post(f"/review/calls/{sid}/review",
                       data={**form, "answer": "<b>"}).status_code == 422  # fmt: skip
    (latest,) = store.latest_reviews(scored_call_id=sid)
    assert (latest.reviewer, latest.human_answer, latest.check_id) == ("ana", "agree", "greeting")
    assert len(store.review_history(sid)) == 2
    fix = {"segment": "2", "text": "sure, go ahead", "csrf": csrf}
    assert client.post(f"/review/calls/{sid}/transcript", data=fix).status_code == 200
    assert store.corrections(sid)[0].corrected_text == "sure, go ahead"
    huge = "9" * 30
    assert client.post(f"/review/calls/{huge}/review", data=form).status_code == 422
    bad_segment = {**fix, "segment": huge}
    assert client.post(f"/review/calls/{sid}/transcript", data=bad_segment).status_code == 404
    assert "sure, go ahead" in client.get(f"/review/calls/{sid}").text


def _wav() -> bytes:
    buf = io.BytesIO()
    t = np.arange(16000 * 2) / 16000
    sf.write(buf, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


def test_scoring_api_token_and_uploads_reach_the_store(env):
    client, store, _ = env
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    body, wav = {"content": _wav(), "headers": {"Content-Type": "audio/wav"}}, _wav()
    assert client.post("/v1/score", **body).status_code == 401
    wrong = {"Content-Type": "audio/wav", "Authorization": "Bearer nope"}
    assert client.post("/v1/score", content=wav, headers=wrong).status_code == 401
    ok = {"Content-Type": "audio/wav", "Authorization": "Bearer tok"}
    assert client.post("/v1/score", content=wav, headers=ok).status_code == 200
    (row,) = [c for c in store.queue().rows if c.source == "api"]
    assert row.call_id == "9" * 16 and row.audio_path.endswith(".wav")
    assert open(row.audio_path, "rb").read() == wav
    _login(client)
    assert client.get(f"/review/calls/{row.id}/audio").content == wav


def test_kept_uploads_have_a_name_the_player_and_the_audio_check_accept(tmp_path):
    from callqa.review.sinks import _keep_upload, audio_problem

    kinds = [("WAV", "PCM_24", ".wav"), ("WAVEX", "PCM_16", ".wav"),
             ("AIFF", "PCM_16", ".aiff"), ("FLAC", "PCM_16", ".flac")]  # fmt: skip
    for fmt, subtype, suffix in kinds:
        buf = io.BytesIO()
        sf.write(buf, np.zeros((800, 2), np.float32), 8000, format=fmt, subtype=subtype)
        path = _keep_upload(tmp_path, buf.getvalue())
        assert path.suffix == suffix and audio_problem(path) is None, fmt


def test_file_recorder_reads_the_sidecar_agent(tmp_path):
    store = open_store(ReviewConfig(db_url=f"sqlite:///{tmp_path / 'r.db'}"))
    audio = write_call(tmp_path / "c.wav")
    (tmp_path / "c.json").write_text('{"agent": "agent-042"}')
    file_recorder(store, "score")(make_result("b" * 16), audio, None)
    (row,) = store.queue().rows
    assert (row.agent, row.source, row.audio_path) == ("agent-042", "score", str(audio))


def test_audio_is_served_only_while_it_is_audio(env, tmp_path):
    client, store, sid = env
    _login(client)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-KEY\n")
    fake = tmp_path / "fake.wav"
    fake.write_text("TOP-SECRET-KEY\n")
    (tmp_path / "folder.wav").mkdir()
    bad = [store.add_scored(make_result(f"{i:016x}"), "import", path)
           for i, path in enumerate((secret, fake, tmp_path / "folder.wav"))]  # fmt: skip
    for bad_sid in bad:
        for url in (f"/review/calls/{bad_sid}/audio", f"/review/calls/{bad_sid}/figure/agent.png"):
            r = client.get(url)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", url
            assert b"TOP-SECRET" not in r.content
    assert client.get(f"/review/calls/{sid}/audio").status_code == 200
    audio = store.get_scored(sid).audio_path  # the recording is replaced after it was stored
    open(audio, "w").write("TOP-SECRET-KEY\n")
    r = client.get(f"/review/calls/{sid}/audio")
    assert r.status_code == 404 and b"TOP-SECRET" not in r.content


def test_too_long_text_is_refused_with_its_limit(env):
    client, store, sid = env
    csrf = _login(client)
    longest = "\U0001f600" * 5000  # at the limit, every character 4 bytes: stored
    fix = {"segment": "1", "text": longest, "csrf": csrf}
    assert client.post(f"/review/calls/{sid}/transcript", data=fix).status_code == 200
    assert store.corrections(sid)[0].corrected_text == longest
    for text in ("x" * 5001, "\U0001f600" * 100_000, "y" * 5_000_000):
        r = client.post(f"/review/calls/{sid}/transcript", data={**fix, "text": text})
        assert r.status_code == 413, len(text)
        error = r.json()["error"]
        assert error["code"] == "text_too_long" and "5000 characters" in error["message"]
        assert "xxxx" not in r.text and "yyyy" not in r.text
    form = {"check": "greeting", "answer": "agree", "comment": "z" * 5001, "csrf": csrf}
    r = client.post(f"/review/calls/{sid}/review", data=form)
    assert r.status_code == 413 and r.json()["error"]["code"] == "text_too_long"
    assert len(store.corrections(sid)) == 1 and not store.review_history(sid)


def test_a_locked_database_answers_503_db_busy(env, tmp_path, monkeypatch, caplog):
    import sqlite3

    from callqa.review import store as store_module

    client, store, sid = env
    csrf = _login(client)
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.3)
    store.engine.dispose()  # new connections wait BUSY_TIMEOUT_S
    holder = sqlite3.connect(tmp_path / "review.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing
    fix = {"segment": "1", "text": "PRIVATE-WORDS of the reviewer", "csrf": csrf}
    answer = {"check": "greeting", "answer": "agree", "comment": "PRIVATE-NOTE", "csrf": csrf}
    try:
        for url, form in (("transcript", fix), ("review", answer)):
            t0 = time.monotonic()
            r = client.post(f"/review/calls/{sid}/{url}", data=form, follow_redirects=False)
            assert r.status_code == 503 and time.monotonic() - t0 < 10, url
            assert r.json()["error"]["code"] == "db_busy" and "try again" in r.text
            assert int(r.headers["retry-after"]) > 0 and "PRIVATE" not in r.text
    finally:
        holder.rollback()
        holder.close()
    assert "PRIVATE" not in caplog.text
    assert "database busy" in caplog.text
    # the same client goes on: the fix saved once the lock is gone
    r = client.post(f"/review/calls/{sid}/transcript", data=fix, follow_redirects=False)
    assert r.status_code == 303 and store.corrections(sid)[0].corrected_text == fix["text"]
