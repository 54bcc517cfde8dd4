"""The review web app: an APIRouter that `callqa serve` mounts under /review (one FastAPI app).

Pages are server-rendered (`pages.py`); the only script besides the report's seek lines is
`static/review.js` (keyboard shortcuts), served from the package. Every page needs a logged-in
user (signed session cookie), every POST a CSRF token. Audio and figures are looked up by the
scored call's row id, from paths the scoring code stored; no client value reaches a path, and a
stored file is served only while it is still audio (`sinks.audio_problem`). A write that finds
the database locked answers 503 `db_busy`; text past MAX_TEXT answers 413 `text_too_long`.
"""

from __future__ import annotations

import logging
import mimetypes
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError

from callqa.config import ReviewConfig
from callqa.review import pages
from callqa.review.auth import SESSION_COOKIE, Sessions, load_secret, login_csrf
from callqa.review.figures import ROLES, figure_png
from callqa.review.models import HUMAN_ANSWERS
from callqa.review.sinks import audio_problem
from callqa.review.store import ORDERS, QueueFilters, ReviewStore
from callqa.schemas import ApiError, QAResult

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
LOGIN_COOKIE = "callqa_review_login"
# Inline styles and the report's inline seek script; nothing else, and nothing from elsewhere.
CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
)
Text = Annotated[str, Form(max_length=5000)]
MAX_TEXT = 5000  # characters of a corrected transcript line or a review comment
LongText = Annotated[str, Form()]  # checked in the route: 413 `text_too_long` past MAX_TEXT
# A review form with MAX_TEXT characters of 4-byte UTF-8, percent-encoded, fits; a bigger body
# is refused before parsing (the form parser's own limit answers a bare 400).
MAX_FORM_BYTES = 128 * 1024
RETRY_AFTER_S = 5
INT_LIMIT = 2**31 - 1  # ids, pages and segment numbers; beyond SQLite's range was a 500
Sid = Annotated[int, PathParam(ge=0, le=INT_LIMIT)]


def review_router(
    store: ReviewStore, cfg: ReviewConfig, channel_roles: tuple[str, str] = ("agent", "customer")
) -> APIRouter:
    """The /review routes over `store`; the session key comes from `cfg.secret_file`."""
    secret = load_secret(cfg.secret_file)
    sessions = Sessions(secret, cfg.session_max_age_s)
    draw_lock = threading.Lock()  # figures are CPU-heavy: draw one call at a time
    router = APIRouter(prefix="/review", route_class=_FormLimit)

    def html(text: str, status: int = 200) -> HTMLResponse:
        headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}
        return HTMLResponse(text, status_code=status, headers=headers)

    def current(request: Request) -> tuple[dict, str] | None:
        """(session, username) of a logged-in user that still exists, else None."""
        session = sessions.read(request.cookies.get(SESSION_COOKIE))
        if session is None or store.get_user(session["u"]) is None:
            return None
        return session, session["u"]

    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/review/login?next={quote(target)}", status_code=303)

    def posted(request: Request, csrf: str) -> tuple[dict, str]:
        """The session of a POST whose CSRF token matches; 403 otherwise."""
        who = current(request)
        if who is None or not sessions.csrf_ok(who[0], csrf):
            raise HTTPException(403)
        return who

    @router.get("/static/review.js")
    def script() -> Response:
        js = (STATIC / "review.js").read_text(encoding="utf-8")
        return Response(js, media_type="text/javascript", headers={"Cache-Control": "max-age=300"})

    @router.get("/login")
    def login_form(request: Request, next: str = "/review/") -> HTMLResponse:
        nonce = secrets.token_hex(16)
        resp = html(pages.login_page(login_csrf(secret, nonce), _local(next)))
        resp.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/review")  # fmt: skip
        return resp

    @router.post("/login")
    def login(
        request: Request, username: Text, password: Text, csrf: Text, next: Text = "/review/"
    ) -> Response:
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not secrets.compare_digest(login_csrf(secret, nonce), csrf):
            raise HTTPException(403)
        user = store.authenticate(username, password)
        if user is None:
            logger.info("review: failed log-in")
            return html(pages.login_page(csrf, _local(next), failed=True), 401)
        resp = RedirectResponse(_local(next), status_code=303)
        resp.set_cookie(SESSION_COOKIE, sessions.make(user.username), max_age=cfg.session_max_age_s,
                        httponly=True, samesite="lax", secure=request.url.scheme == "https",
                        path="/review")  # fmt: skip
        resp.delete_cookie(LOGIN_COOKIE, path="/review")
        return resp

    @router.post("/logout")
    def logout(request: Request, csrf: Text) -> Response:
        posted(request, csrf)
        resp = RedirectResponse("/review/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/review")
        return resp

    @router.get("/")
    def queue(request: Request) -> Response:
        who = current(request)
        if who is None:
            return to_login(request)
        args = {k: v[:200] for k, v in request.query_params.items()}
        filters = _filters(args)
        for key in ("date_from", "date_to"):  # a date that does not parse is not shown back
            if key in args and _date(args[key]) is None:
                args.pop(key)
        order = args.get("order") if args.get("order") in ORDERS else "teach"
        page = store.queue(filters, _int(args.get("page"), 1), cfg.page_size, order)
        body = pages.queue_page(
            page, args, store.model_versions(), who[1], sessions.csrf_token(who[0])
        )
        return html(body)

    @router.get("/calls/{sid}")
    def call(request: Request, sid: Sid) -> Response:
        who = current(request)
        if who is None:
            return to_login(request)
        row = store.get_scored(sid)
        if row is None:
            raise HTTPException(404)
        result = QAResult.model_validate_json(row.result_json)
        latest = {r.check_id: r for r in store.latest_reviews(scored_call_id=sid)}
        corrected = {c.segment_index: c.corrected_text for c in store.corrections(sid)}
        body = pages.call_page(
            row, result, store.verdicts(sid), latest, corrected, store.next_in_queue(sid),
            who[1], sessions.csrf_token(who[0]),
        )  # fmt: skip
        return html(body)

    @router.get("/calls/{sid}/audio")
    def audio(request: Request, sid: Sid) -> Response:
        if current(request) is None:
            raise HTTPException(403)
        path = _stored_audio(store, sid)
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media)  # answers Range requests: seeking works

    @router.get("/calls/{sid}/figure/{role}.png")
    def figure(request: Request, sid: Sid, role: str) -> Response:
        if current(request) is None:
            raise HTTPException(403)
        if role not in ROLES:
            raise HTTPException(404)
        path = _stored_audio(store, sid)
        result = QAResult.model_validate_json(store.get_scored(sid).result_json)
        with draw_lock:
            png = figure_png(cfg.figure_cache_dir, sid, role, path, result, channel_roles)
        if png is None:
            raise HTTPException(404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @router.post("/calls/{sid}/review")
    def review(
        request: Request, sid: Sid, check: Text, answer: Text, csrf: Text, comment: LongText = ""
    ) -> Response:
        _, user = posted(request, csrf)
        if answer not in HUMAN_ANSWERS:
            raise HTTPException(422)
        comment = _limited(comment.strip())
        try:
            with _writing():
                rid = store.add_review(sid, check, user, answer, comment)
        except LookupError:
            raise HTTPException(404) from None
        if request.headers.get("x-requested-with") == "fetch":
            return JSONResponse({"id": rid, "check": check, "answer": answer, "reviewer": user})
        return RedirectResponse(f"/review/calls/{sid}#check-{quote(check)}", status_code=303)

    @router.post("/calls/{sid}/transcript")
    def correct(request: Request, sid: Sid, segment: Text, text: LongText, csrf: Text) -> Response:
        _, user = posted(request, csrf)
        text = _limited(text.strip())
        try:
            with _writing():
                store.add_correction(sid, _int(segment, -1), text, user)
        except LookupError:
            raise HTTPException(404) from None
        return RedirectResponse(f"/review/calls/{sid}", status_code=303)

    return router


def _stored_audio(store: ReviewStore, sid: int) -> Path:
    """The call's recording, only while it is still an audio file (whatever path a results
    line brought in, nothing else is ever served); 404 otherwise."""
    row = store.get_scored(sid)
    if row is None or not row.audio_path:
        raise HTTPException(404)
    problem = audio_problem(row.audio_path)
    if problem is not None:
        logger.warning("review: scored call %d: stored audio is %s; not served", sid, problem)
        raise HTTPException(404)
    return Path(row.audio_path)


class _FormLimit(APIRoute):
    """A route whose POST body is refused with 413 `text_too_long` past MAX_FORM_BYTES."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            length = request.headers.get("content-length", "")
            if request.method == "POST" and length.isdigit() and int(length) > MAX_FORM_BYTES:
                raise _too_long()
            return await handler(request)

        return limited


def _too_long() -> ApiError:
    return ApiError(413, "text_too_long", f"the text is too long: at most {MAX_TEXT} characters")


def _limited(text: str) -> str:
    """`text` when it is at most MAX_TEXT characters; 413 (never echoing it) otherwise."""
    if len(text) > MAX_TEXT:
        raise _too_long()
    return text


@contextmanager
def _writing() -> Iterator[None]:
    """A write to the review database; another writer holding it past the busy timeout (or a
    server that is away) -> 503 `db_busy`. Only the error's class is logged: its message
    could carry what the reviewer typed."""
    try:
        yield
    except OperationalError as err:
        logger.warning("review: database busy, write refused (%s)", type(err.orig).__name__)
        raise ApiError(
            503, "db_busy", "the review database is busy; nothing was saved, try again in a "
            "few seconds", {"Retry-After": str(RETRY_AFTER_S)},
        ) from None  # fmt: skip


def _local(target: str) -> str:
    """A redirect target inside the app: anything else (another host, `//x`) -> the queue."""
    ok = target.startswith("/review/") and not target.startswith("//") and "\\" not in target
    return target if ok else "/review/"


def _int(value: str | None, default: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return number if -INT_LIMIT <= number <= INT_LIMIT else default


def _flag(value: str | None) -> bool | None:
    return {"1": True, "0": False}.get(value or "")


def _date(value: str | None) -> datetime | None:
    try:
        return datetime.strptime(value, "%Y-%m-%d") if value else None
    except ValueError:
        return None


def _filters(args: dict[str, str]) -> QueueFilters:
    """Queue filters from the query string; a malformed value is ignored, never echoed."""
    date_to = _date(args.get("date_to"))
    if date_to is not None:  # the form's "to" day is inclusive
        from datetime import timedelta

        date_to += timedelta(days=1)
    return QueueFilters(
        failed=_flag(args.get("failed")),
        critical=_flag(args.get("critical")),
        check_id=args.get("check") or None,
        agent=args.get("agent") or None,
        date_from=_date(args.get("date_from")),
        date_to=date_to,
        model_version=args.get("model") or None,
        reviewed=_flag(args.get("reviewed")),
        random_share=_flag(args.get("share")),
    )
