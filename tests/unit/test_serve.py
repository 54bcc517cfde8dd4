"""`callqa serve`: the HTTP app on a real Scorer (tiny.en, MiniLM, Silero) and real speech.

Most cases use FastAPI's TestClient over one shared Scorer; each app is cheap because its
versions share that Scorer. One slow test runs the server with uvicorn in a child process.
An unknown `?scorecard=` name answers 422 `unknown_scorecard` (a bad query value, like an
invalid name), not 404 (the route exists).
"""

from __future__ import annotations

import io
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import httpx
import jsonschema
import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT
from fastapi.testclient import TestClient

from callqa.config import ServeConfig
from callqa.mlops.serve import ScorerLoaded, create_app
from callqa.schemas import json_schema

SECRET = b"SECRET-INPUT-7f3a"  # planted in bad bodies; must never come back
CLIENT_NAME = "/home/alice/calls/secret_client_name.wav"  # a filename the client sends
PATH_LIKE = re.compile(r"(/[\w.-]+){2,}")  # two or more path segments
CFG = ServeConfig(
    max_body_mb=1,
    max_duration_s=20,
    max_in_flight=2,
    retry_after_s=7,
    reload_interval_s=0.2,
    scorecards_dir=ROOT / "scorecards",
)


class Versions:
    """A Source over one shared Scorer: serves whichever version `want` names."""

    def __init__(self, scorer, want: str = "1", gate: threading.Event | None = None):
        self.scorer, self.want, self.gate = scorer, want, gate

    def current_version(self) -> str:
        return self.want

    def load(self, version: str) -> ScorerLoaded:
        if self.gate is not None:
            self.gate.wait(60)
        if version == "broken":
            raise RuntimeError("the registry is unreachable")
        return ScorerLoaded(lambda: self.scorer, version, ROOT / "scorecards")


class Crashing:
    """A Loaded whose scoring fails with a message full of things that must not leak."""

    version = "crash"

    def score_bytes(self, data, name, scorecard):
        raise RuntimeError(f"Traceback: {ROOT}/secret/state.bin {data[:20]!r}")


class CrashSource:
    def current_version(self):
        return "crash"

    def load(self, version):
        return Crashing()


def _until(cond, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextmanager
def serving(source, cfg: ServeConfig = CFG, ready: bool = True):
    app = create_app(source, cfg)
    with TestClient(app, raise_server_exceptions=False) as client:
        if ready:
            _until(lambda: client.get("/readyz").status_code == 200)
        yield client


def _wav(seconds: float, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * sr)) / sr
    sf.write(buf, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def _assert_clean_error(resp, status: int, code: str) -> None:
    """The error body: our code and a short message, nothing of the input, no path or trace."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    text = resp.text
    assert SECRET.decode() not in text and "secret_client_name" not in text
    assert "Traceback" not in text and str(ROOT) not in text
    assert not PATH_LIKE.search(body["error"]["message"]), body


@pytest.fixture(scope="module")
def scorer():
    from callqa.config import load_params
    from callqa.pipeline import Scorer

    p = load_params(ROOT / "params.yaml")
    rules_only = p.score.model_copy(update={"model": None})
    return Scorer(p.preprocess, p.transcribe, rules_only, p.validate_cfg)


@pytest.fixture(scope="module")
def good(realdata) -> bytes:
    return (realdata / "asr" / "ps_goforward.wav").read_bytes()


@pytest.fixture(scope="module")
def client(scorer):
    with serving(Versions(scorer)) as c:
        yield c


def test_scores_a_raw_body_and_a_multipart_upload(client, good):
    schema = json_schema()
    raw = client.post("/v1/score", content=good, headers={"Content-Type": "audio/wav"})
    assert raw.status_code == 200, raw.text
    assert raw.headers["X-Callqa-Model-Version"] == "1"
    jsonschema.validate(raw.json(), schema)
    assert raw.json()["path"] == "upload" and raw.json()["duration_s"] > 2
    files = {"file": (CLIENT_NAME, good, "audio/wav")}
    multi = client.post("/v1/score", files=files)
    assert multi.status_code == 200, multi.text
    jsonschema.validate(multi.json(), schema)
    assert multi.json()["call_id"] == raw.json()["call_id"]
    assert "secret_client_name" not in multi.text  # the client's filename is never used
    octet = client.post(
        "/v1/score", content=good, headers={"Content-Type": "application/octet-stream"}
    )
    assert octet.status_code == 200


def test_scorecard_override_by_bare_name_only(client, good):
    headers = {"Content-Type": "audio/wav"}
    ok = client.post("/v1/score?scorecard=default", content=good, headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["scorecard"]["path"].endswith("default.yaml")
    for name in ["../etc/passwd", "/etc/passwd", "default.yaml", "a" * 65, ""]:
        bad = client.post("/v1/score", params={"scorecard": name}, content=good, headers=headers)
        _assert_clean_error(bad, 422, "invalid_scorecard")
        assert "passwd" not in bad.text
    unknown = client.post("/v1/score?scorecard=no_such_card", content=good, headers=headers)
    _assert_clean_error(unknown, 422, "unknown_scorecard")
    assert "no_such_card" not in unknown.text


def test_a_broken_scorecard_is_logged_at_start_and_answers_422(scorer, good, tmp_path, caplog):
    """Found from outside: a scorecard in serve.scorecards_dir that does not load was found only
    when a request named it, and that request got a 500; "default\\n" passed the name check."""
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "ok.yaml").write_bytes((ROOT / "scorecards" / "default.yaml").read_bytes())
    (cards / "badre.yaml").write_text(
        "checks:\n  - {id: a, role: any, type: phrase, patterns: ['(unclosed']}\n"
    )

    class Cards(Versions):
        def load(self, version):
            return ScorerLoaded(lambda: self.scorer, version, cards)

    headers = {"Content-Type": "audio/wav"}
    with caplog.at_level("WARNING"), serving(Cards(scorer)) as c:
        assert "badre.yaml does not load" in caplog.text
        bad = c.post("/v1/score?scorecard=badre", content=good, headers=headers)
        _assert_clean_error(bad, 422, "scorecard_invalid")
        assert c.post("/v1/score?scorecard=ok", content=good, headers=headers).status_code == 200
        newline = c.post("/v1/score", params={"scorecard": "ok\n"}, content=good, headers=headers)
        _assert_clean_error(newline, 422, "invalid_scorecard")


def test_refuses_bad_requests_with_clean_errors(client):
    wav = {"Content-Type": "audio/wav"}
    garbage = SECRET + np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes()
    too_big = SECRET + bytes(int(1.5 * 2**20))
    cases = [
        (client.post("/v1/score", content=too_big, headers=wav), 413, "too_large"),
        (client.post("/v1/score", content=iter([too_big[:2**19]] * 3), headers=wav), 413,
         "too_large"),  # chunked: no Content-Length, counted while reading
        (client.post("/v1/score", content=SECRET, headers={"Content-Type": "text/plain"}), 415,
         "unsupported_media_type"),
        (client.post("/v1/score", content=garbage, headers=wav), 415, "not_audio"),
        (client.post("/v1/score", content=b"", headers=wav), 415, "empty_file"),
        (client.post("/v1/score", files={"file": (CLIENT_NAME, garbage, "audio/wav")}), 415,
         "not_audio"),
        (client.post("/v1/score", files={"other": (CLIENT_NAME, garbage)}), 400, "bad_request"),
        (client.post("/v1/score", content=_wav(0.2), headers=wav), 422, "too_short"),
        (client.post("/v1/score", content=_wav(25, 8000), headers=wav), 422, "too_long"),
        (client.post("/v1/score", content=_wav(3), headers=wav), 422, "no_speech"),
        (client.get("/v1/score"), 405, "method_not_allowed"),
        (client.get(f"/nope{CLIENT_NAME}"), 404, "not_found"),
    ]  # fmt: skip
    for resp, status, code in cases:
        _assert_clean_error(resp, status, code)
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.head("/healthz").status_code == 200  # load balancers probe with HEAD


def test_429_when_in_flight_is_full_with_retry_after(client, good):
    app = client.app
    results = []

    def post():
        results.append(
            client.post("/v1/score", content=good, headers={"Content-Type": "audio/wav"})
        )

    with app.state.scoring_lock:  # the scorer is busy: requests wait
        threads = [threading.Thread(target=post) for _ in range(CFG.max_in_flight)]
        for t in threads:
            t.start()
        _until(lambda: app.state.in_flight == CFG.max_in_flight)
        full = client.post("/v1/score", content=good, headers={"Content-Type": "audio/wav"})
        _assert_clean_error(full, 429, "too_many_requests")
        assert full.headers["Retry-After"] == "7"
    for t in threads:
        t.join(60)
    assert [r.status_code for r in results] == [200] * CFG.max_in_flight
    assert app.state.in_flight == 0


def test_metrics_count_requests_errors_audio_and_version(client, good):
    client.post("/v1/score", content=good, headers={"Content-Type": "audio/wav"})
    client.post("/v1/score", content=SECRET, headers={"Content-Type": "audio/wav"})
    text = client.get("/metrics").text
    assert re.search(r'^callqa_requests_total\{code="200"\} [1-9]', text, re.M)
    assert re.search(r'^callqa_errors_total\{code="not_audio"\} [1-9]', text, re.M)
    assert re.search(r"^callqa_audio_seconds_total [1-9]", text, re.M)
    assert re.search(r"^callqa_request_seconds_count [1-9]", text, re.M)
    assert 'callqa_model_version_info{version="1"} 1.0' in text
    assert client.get("/readyz").json() == {"status": "ready", "version": "1"}


def test_503_until_the_first_version_loads(scorer, good):
    gate = threading.Event()
    with serving(Versions(scorer, gate=gate), ready=False) as client:
        assert client.get("/healthz").status_code == 200
        _assert_clean_error(client.get("/readyz"), 503, "not_ready")
        wav = {"Content-Type": "audio/wav"}
        early = client.post("/v1/score", content=good, headers=wav)
        _assert_clean_error(early, 503, "not_ready")
        assert early.headers["Retry-After"] == "7"
        gate.set()
        _until(lambda: client.get("/readyz").status_code == 200)
        assert client.post("/v1/score", content=good, headers=wav).status_code == 200


def test_hot_reload_swaps_versions_without_failing_a_request(scorer, good, caplog):
    source = Versions(scorer, want="1")
    wav = {"Content-Type": "audio/wav"}
    with serving(source) as client:
        app, started = client.app, []
        with app.state.scoring_lock:  # a request in flight on version 1 during the swap
            t = threading.Thread(
                target=lambda: started.append(client.post("/v1/score", content=good, headers=wav))
            )
            t.start()
            _until(lambda: app.state.in_flight == 1)
            source.want = "2"
            _until(lambda: client.get("/readyz").json().get("version") == "2")
        t.join(60)
        assert started[0].status_code == 200
        assert started[0].headers["X-Callqa-Model-Version"] == "1"
        after = client.post("/v1/score", content=good, headers=wav)
        assert after.status_code == 200 and after.headers["X-Callqa-Model-Version"] == "2"
        # A version that fails to load is retried each poll; version 2 keeps serving.
        source.want = "broken"
        with caplog.at_level(logging.INFO, logger="callqa.mlops.serve"):
            time.sleep(4 * CFG.reload_interval_s)
        failed = [r for r in caplog.records if "version broken failed" in r.getMessage()]
        assert len(failed) >= 2 and [bool(r.exc_info) for r in failed].count(True) == 1
        assert "version 2 keeps serving" in failed[0].getMessage()
        assert client.get("/readyz").json()["version"] == "2"
        kept = client.post("/v1/score", content=good, headers=wav)
        assert kept.headers["X-Callqa-Model-Version"] == "2"
        assert 'callqa_model_version_info{version="2"} 1.0' in client.get("/metrics").text


def test_a_crash_is_a_generic_500(good):
    def boom():  # a route that fails outside scoring reaches the catch-all handler
        raise RuntimeError(f"{ROOT}/secret/state.bin")

    with serving(CrashSource()) as client:
        client.app.add_api_route("/boom", boom)
        resp = client.post("/v1/score", content=good, headers={"Content-Type": "audio/wav"})
        _assert_clean_error(resp, 500, "internal_error")
        assert "state.bin" not in resp.text
        _assert_clean_error(client.get("/boom"), 500, "internal_error")
        assert client.get("/healthz").status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER = """
import logging, sys
from callqa.config import load_params
from callqa.mlops.serve import LocalSource, create_app, listen, run
logging.basicConfig(level=logging.INFO)
p = load_params("params.yaml")
p = p.model_copy(update={"score": p.score.model_copy(update={"model": None})})
cfg = p.serve.model_copy(update={"port": int(sys.argv[1]), "max_body_mb": 1,
                                 "max_duration_s": 20, "max_in_flight": 1, "body_timeout_s": 3})
run(create_app(LocalSource(p), cfg), listen(cfg.host, cfg.port))
"""


@pytest.mark.slow
def test_uvicorn_server_survives_every_bad_request(good, tmp_path):
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    wav = {"Content-Type": "audio/wav"}
    try:
        with httpx.Client(base_url=base, timeout=120) as http:

            def ready() -> bool:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                try:
                    return http.get("/readyz").status_code == 200
                except httpx.TransportError:
                    return False

            _until(ready, timeout_s=180)
            assert http.get("/readyz").json()["version"] == "local"
            ok = http.post("/v1/score", content=good, headers=wav)
            assert ok.status_code == 200 and ok.headers["X-Callqa-Model-Version"] == "local"
            jsonschema.validate(ok.json(), json_schema())
            bad = [
                (dict(content=SECRET + bytes(2**20 + 10), headers=wav), 413),
                (dict(content=iter([bytes(2**19)] * 3), headers=wav), 413),
                (dict(content=SECRET, headers={"Content-Type": "text/plain"}), 415),
                (dict(content=SECRET * 50, headers=wav), 415),
                (dict(files={"file": (CLIENT_NAME, SECRET, "audio/wav")}), 415),
                (dict(content=_wav(0.2), headers=wav), 422),
                (dict(content=_wav(25, 8000), headers=wav), 422),
                (dict(content=good, headers=wav, params={"scorecard": "../etc/passwd"}), 422),
            ]
            for kwargs, status in bad:
                with httpx.Client(base_url=base, timeout=120) as one:  # a fresh connection
                    resp = one.post("/v1/score", **kwargs)
                _assert_clean_error(resp, status, resp.json()["error"]["code"])
                assert http.get("/healthz").json() == {"status": "ok"}
            # an upload that stalls mid-body holds no scoring slot (max_in_flight is 1 here)
            # and is answered 408 once it has sent nothing for body_timeout_s
            stalled = socket.create_connection(("127.0.0.1", port))
            stalled.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                            b"Content-Length: 100000\r\n\r\nRIFF")  # fmt: skip
            assert http.post("/v1/score", content=good, headers=wav).status_code == 200
            stalled.settimeout(60)
            assert stalled.recv(100).startswith(b"HTTP/1.1 408")
            stalled.close()
            assert "callqa_requests_total" in http.get("/metrics").text
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()
