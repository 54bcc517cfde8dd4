"""`callqa serve`: audio bytes over HTTP -> one QA result as JSON (FastAPI + uvicorn).

A `Source` says which model version should serve and loads it; a daemon thread polls it and swaps
the serving `Loaded` reference when the version moves. Every request checks size, type, readiness
and load before any model work; scoring runs in a worker thread, one call at a time.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from callqa.audio.io import AudioError
from callqa.config import ServeConfig
from callqa.schemas import ApiError

if TYPE_CHECKING:
    from callqa.config import Params
    from callqa.pipeline import Scorer

from callqa.mlops.pyfunc import (  # noqa: F401 - ScorerLoaded, UnknownScorecard re-exported
    BARE_NAME,
    SCORECARD_NAME,
    BrokenScorecard,
    ScorerLoaded,
    UnknownScorecard,
)

logger = logging.getLogger(__name__)

# What the scorer calls every upload, in messages and in the result's `path`: a filename sent by
# the client is never used, so it can never come back in a response or reach a path.
UPLOAD_NAME = "upload"
RAW_TYPES = ("application/octet-stream",)  # plus every audio/*
UNDECODABLE = {"empty_file", "not_audio", "unreadable"}  # 415; other AudioError codes are 422


class Loaded(Protocol):
    """One model version, ready to score."""

    version: str  # e.g. registry version "3", or "local"

    def score_bytes(self, data: bytes, name: str, scorecard: str | None) -> dict:
        """The QA result as JSON data; raises AudioError or UnknownScorecard."""


class Source(Protocol):
    def current_version(self) -> str | None:
        """Cheap, polled: the version that should serve now (None: cannot tell; keep serving)."""

    def load(self, version: str) -> Loaded:
        """Slow (seconds); may raise."""


class LocalSource:
    """Always version "local": a Scorer built from params.yaml, as `callqa score` builds it."""

    def __init__(self, params: Params):
        self.params = params

    def current_version(self) -> str:
        return "local"

    def load(self, version: str) -> ScorerLoaded:
        from callqa.pipeline import Scorer

        p = self.params

        def build() -> Scorer:
            return Scorer(p.preprocess, p.transcribe, p.score, p.validate_cfg)

        return ScorerLoaded(build, version, p.serve.scorecards_dir)


class Metrics:
    """The Prometheus metrics of one app (its own registry, so two apps never share counts)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram, Info

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("callqa_requests", "POST /v1/score by status", ["code"], registry=r)
        self.seconds = Histogram("callqa_request_seconds", "POST /v1/score wall time", registry=r)
        self.audio_s = Counter("callqa_audio_seconds", "Audio seconds scored", registry=r)
        self.errors = Counter("callqa_errors", "Error answers by error code", ["code"], registry=r)
        self.version = Info("callqa_model_version", "The model version serving", registry=r)


class ModelSlot:
    """The `Loaded` that serves now, and the daemon thread that loads and swaps in new ones."""

    def __init__(self, source: Source, interval_s: float, metrics: Metrics):
        self.source, self.interval_s, self.metrics = source, interval_s, metrics
        self.current: Loaded | None = None
        self._failed: str | None = None  # the version whose last load failed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="callqa-model-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            self.refresh()
            if self._stop.wait(self.interval_s):
                return

    def refresh(self) -> None:
        """Load the source's version when it differs from the one serving; swap it in."""
        serving = self.current
        try:
            want = self.source.current_version()
        except Exception:  # noqa: BLE001 - the registry may be briefly away; ask again next poll
            logger.exception("asking the model source for its version failed")
            return
        if want is None or (serving is not None and serving.version == want):
            return
        t0 = time.perf_counter()
        try:
            loaded = self.source.load(want)
        except Exception as err:  # noqa: BLE001 - keep serving the old one; retried next poll
            kept = f"version {serving.version} keeps serving" if serving else "not ready yet"
            # the traceback once per version, not at every poll
            trace = err if want != self._failed else None
            logger.error(
                "loading model version %s failed (%s): %s", want, kept, err, exc_info=trace
            )
            self._failed = want
            return
        self._failed = None
        # One reference assignment (atomic): a request holds the version it started with.
        self.current = loaded
        self.metrics.version.info({"version": loaded.version})
        logger.info(
            "serving model version %s (loaded in %.1f s)", loaded.version, time.perf_counter() - t0
        )


def create_app(
    source: Source,
    cfg: ServeConfig,
    *,
    routers: Iterable[APIRouter] = (),
    on_scored: Callable[[dict, bytes, str], None] | None = None,
    api_token: str | None = None,
) -> FastAPI:
    """The HTTP app; the first version loads in the background, so it answers at once.

    Args:
        routers: more routes in the same app (the review pages under /review); passed in by
            the CLI, so this module does not reach sideways into `review/`.
        on_scored: called with (result, audio bytes, model version) after each 200 of
            POST /v1/score, in a worker thread (the review database keeps the result).
        api_token: when set, POST /v1/score answers 401 without `Authorization: Bearer <it>`.
    """
    metrics = Metrics()
    slot = ModelSlot(source, cfg.reload_interval_s, metrics)
    max_body = int(cfg.max_body_mb * 1024 * 1024)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        slot.start()
        yield
        slot.stop()

    app = FastAPI(
        title="callqa", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.slot = slot
    app.state.metrics = metrics
    app.state.scoring_lock = threading.Lock()  # scoring is CPU-bound and not reentrant-safe
    app.state.in_flight = 0  # requests reading, waiting or scoring; changed on the event loop

    def error_response(err: ApiError) -> JSONResponse:
        metrics.errors.labels(code=err.code).inc()
        body = {"error": {"code": err.code, "message": err.message}}
        return JSONResponse(body, status_code=err.status, headers=err.headers)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, err: ApiError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # exc.detail may be anything a route put there: answer with the status phrase only
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        phrase = HTTPStatus(exc.status_code).phrase
        return error_response(ApiError(exc.status_code, code, phrase, exc.headers))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer echoes the offending `input`
        return error_response(ApiError(422, "bad_request", "invalid request parameters"))

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error on %s", request.url.path, exc_info=exc)
        return error_response(ApiError(500, "internal_error", "internal server error"))

    for router in routers:
        app.include_router(router)

    @app.api_route("/healthz", methods=["GET", "HEAD"])  # load balancers probe with HEAD too
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        loaded = slot.current
        if loaded is None:  # polled by orchestrators: not counted as an error
            body = {"error": {"code": "not_ready", "message": "the model is still loading"}}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "version": loaded.version})

    @app.get("/metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/score")
    async def score(request: Request) -> JSONResponse:
        t0, status = time.perf_counter(), 500
        try:
            response = await _score(request)
            status = 200
            return response
        except ApiError as err:
            status = err.status
            raise
        finally:
            metrics.requests.labels(code=str(status)).inc()
            metrics.seconds.observe(time.perf_counter() - t0)

    async def _score(request: Request) -> JSONResponse:
        if api_token is not None:
            _check_token(request, api_token)
        scorecard = request.query_params.get("scorecard")
        _check_headers(request, max_body)
        if scorecard is not None and not SCORECARD_NAME.fullmatch(scorecard):
            raise ApiError(422, "invalid_scorecard", BARE_NAME)
        loaded = slot.current  # taken once: a swap meanwhile does not touch this request
        if loaded is None:
            retry = {"Retry-After": str(cfg.retry_after_s)}
            raise ApiError(503, "not_ready", "the model is still loading; retry shortly", retry)
        # the body first: a client that stops sending holds no scoring slot, and times out
        data = await _read_audio(request, max_body, cfg.body_timeout_s)
        if app.state.in_flight >= cfg.max_in_flight:
            raise ApiError(
                429,
                "too_many_requests",
                "too many requests in flight; retry later",
                {"Retry-After": str(cfg.retry_after_s)},
            )
        app.state.in_flight += 1
        try:
            await run_in_threadpool(_probe, data, cfg.max_duration_s)
            result = await run_in_threadpool(_score_locked, loaded, data, scorecard)
        finally:
            app.state.in_flight -= 1
        metrics.audio_s.inc(result.get("duration_s") or 0)
        if on_scored is not None:
            await run_in_threadpool(_record, result, data, loaded.version)
        return JSONResponse(result, headers={"X-Callqa-Model-Version": loaded.version})

    def _record(result: dict, data: bytes, version: str) -> None:
        try:
            on_scored(result, data, version)
        except Exception:  # noqa: BLE001 - the client gets its result; the copy is logged
            logger.exception("recording a scored upload failed")

    def _score_locked(loaded: Loaded, data: bytes, scorecard: str | None) -> dict:
        with app.state.scoring_lock:
            try:
                return loaded.score_bytes(data, UPLOAD_NAME, scorecard)
            except AudioError as err:
                raise _audio_error(err) from None
            except UnknownScorecard:
                raise ApiError(422, "unknown_scorecard", "scorecard: no such scorecard") from None
            except BrokenScorecard:
                raise ApiError(
                    422, "scorecard_invalid", "scorecard: that scorecard does not load"
                ) from None
            except Exception:  # noqa: BLE001 - logged here with its traceback; never sent
                logger.exception("scoring failed (model version %s)", loaded.version)
                raise ApiError(
                    500, "internal_error", "scoring failed; see the server log"
                ) from None

    return app


def _check_token(request: Request, token: str) -> None:
    """401 unless the request carries `Authorization: Bearer <token>` (constant-time compare)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise ApiError(
            401, "unauthorized", "send Authorization: Bearer <token>",
            {"WWW-Authenticate": "Bearer"},
        )  # fmt: skip


def _check_headers(request: Request, max_body: int) -> None:
    """413 for a declared size over the limit, 415 for a type that is not audio."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, "bad_request", "Content-Length is not a number")
        if int(length) > max_body:
            raise ApiError(413, "too_large", f"the body is over {max_body / 2**20:.3g} MB")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (media.startswith("audio/") or media in RAW_TYPES or media == "multipart/form-data"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send audio/*, application/octet-stream or multipart/form-data with a field 'file'",
        )


async def _read_audio(request: Request, max_body: int, idle_s: float = 30.0) -> bytes:
    """The audio bytes: the raw body, or the multipart field `file`; 413 past `max_body`,
    408 when nothing arrives for `idle_s`, 400 when the client goes away."""
    from starlette.requests import ClientDisconnect

    chunks, size = [], 0
    stream = request.stream().__aiter__()
    while True:  # counted: a chunked body has no Content-Length
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), idle_s)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise ApiError(408, "request_timeout", "the body stopped arriving") from None
        except ClientDisconnect:
            raise ApiError(400, "client_disconnected", "the client went away") from None
        size += len(chunk)
        if size > max_body:
            raise ApiError(413, "too_large", f"the body is over {max_body / 2**20:.3g} MB")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return body

    async def replay() -> dict:  # parse the bytes already read and counted
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=10)
    except Exception:  # noqa: BLE001 - starlette's parse errors; their text is not ours to send
        raise ApiError(400, "bad_request", "the multipart body cannot be parsed") from None
    upload = form.get("file")
    try:
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "bad_request", "multipart: no file in a field named 'file'")
        return await upload.read()
    finally:
        await form.close()


def _probe(data: bytes, max_duration_s: float) -> None:
    """Reject what cannot be decoded or is too long from the header alone, before model work."""
    import soundfile as sf

    if not data:
        raise ApiError(415, "empty_file", "the body is empty")
    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - libsndfile's message may quote the input
        raise ApiError(
            415, "not_audio", "not a readable audio file (wav, flac, ogg, mp3)"
        ) from None
    if info.duration > max_duration_s:
        limit = f"{info.duration:.0f} s is over the server's limit of {max_duration_s:g} s"
        raise ApiError(422, "too_long", limit)


def _audio_error(err: AudioError) -> ApiError:
    """415 for audio that does not decode, 422 for audio the checks refuse."""
    status = 415 if err.code in UNDECODABLE else 422
    return ApiError(status, err.code, err.message.removeprefix(f"{UPLOAD_NAME}: "))


def listen(host: str, port: int) -> socket.socket:
    """A bound listening socket, so a taken port or a bad address is a clear error before the
    server starts (raises OSError with a sentence)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as err:
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


def run(app: FastAPI, sock: socket.socket) -> None:
    """Serve `app` with uvicorn on `sock` (from `listen`): one worker (one copy of the
    models), no access log."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
