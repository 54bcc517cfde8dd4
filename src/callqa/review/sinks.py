"""Where scored results enter the review database: `callqa score`, the inbox and POST /v1/score
each get a small callable from here (the scoring code stays unaware of the database).

A failure to write the database is logged and never fails the scoring: the JSON line is the
record of truth, and `callqa review import` can load it later.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from callqa.audio.io import SCAN_EXTENSIONS, AudioError, probe
from callqa.config import ReviewConfig
from callqa.files import atomic_path, bytes_id
from callqa.review.store import ReviewStore

logger = logging.getLogger(__name__)

# soundfile's format names -> the extension the browser's player sniffs the type from (and
# `audio_problem` asks for; an upload of another format is kept but not played)
UPLOAD_SUFFIX = {
    "WAV": ".wav", "WAVEX": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3",
    "AIFF": ".aiff", "AU": ".au", "CAF": ".caf", "W64": ".w64", "RF64": ".rf64",
}  # fmt: skip


def open_store(cfg: ReviewConfig, url: str | None = None) -> ReviewStore:
    """The store of `cfg` (or `url`), its schema brought to the latest migration."""
    store = ReviewStore(url or cfg.db_url, cfg.random_seed, cfg.random_share)
    store.upgrade()
    return store


CALL_ID = re.compile(r"[0-9a-f]{16}")  # the first 16 hex digits of the audio's SHA-256


def result_problem(data: object) -> str | None:
    """Why a parsed results line brought from elsewhere (`callqa review import`) cannot be
    stored, or None: it must be a QA result with a proper call_id (whether its `path` may be
    played is `audio_problem`'s question). The answer never quotes the line."""
    from pydantic import ValidationError

    from callqa.schemas import QAResult

    if not isinstance(data, dict):
        return "not a JSON object"
    try:
        QAResult.model_validate(data)
    except ValidationError as err:
        return f"not a QA result ({err.error_count()} field(s) do not match the schema)"
    if not CALL_ID.fullmatch(data["call_id"]):
        return "call_id is not 16 lowercase hex digits"
    return None


def audio_problem(path: str | Path) -> str | None:
    """Why `path` is not a recording the review app may serve, or None when it is one: a
    regular file with an extension callqa scores that soundfile reads as audio. Checked when
    result lines are imported and again before every answer with the file, so a stored path
    to anything else (a key, the database, /etc/passwd) is never served."""
    path = Path(path)
    if path.suffix.lower() not in SCAN_EXTENSIONS:
        return "not an audio file name"
    try:
        regular = path.is_file()  # not missing, a folder, a pipe or a device
    except OSError:
        regular = False
    if not regular:
        return "not a regular file"
    try:
        probe(path)
    except AudioError as err:
        return f"not readable as audio ({err.code})"
    return None


@lru_cache(maxsize=32)
def critical_checks(scorecard_path: str) -> frozenset[str]:
    """Ids of the scorecard's critical checks (empty when it cannot be loaded)."""
    from callqa.qa.scorecard import Scorecard, ScorecardError

    try:
        return frozenset(c.id for c in Scorecard.load(scorecard_path).checks if c.critical)
    except ScorecardError:
        logger.warning("%s: cannot read the scorecard's critical checks", scorecard_path)
        return frozenset()


def sidecar_agent(audio_path: Path) -> str | None:
    """The agent named in `<stem>.json` beside the audio (`agent` or `agent_id`), if any."""
    sidecar = Path(audio_path).with_suffix(".json")
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    agent = data.get("agent") or data.get("agent_id") if isinstance(data, dict) else None
    return str(agent)[:200] if isinstance(agent, str | int) else None


def record(
    store: ReviewStore,
    result: dict,
    source: str,
    audio_path: Path | None,
    report_path: Path | None = None,
    version: str | None = None,
) -> int | None:
    """Store one result; logs and returns None when the database cannot take it."""
    try:
        return store.add_scored(
            result, source, audio_path, report_path,
            agent=sidecar_agent(audio_path) if audio_path else None,
            version=version,
            critical_checks=critical_checks(result["scorecard"]["path"]),
        )  # fmt: skip
    except Exception:  # noqa: BLE001 - the result line is written; the review copy can wait
        logger.exception("%s: storing the result in the review database failed", result["call_id"])
        return None


def file_recorder(store: ReviewStore, source: str) -> Callable:
    """For `callqa score` and the inbox: `(result, audio_path, report_path) -> None`."""

    def on_result(result, audio_path: Path, report_path: Path | None) -> None:
        data = result if isinstance(result, dict) else result.model_dump(mode="json")
        record(store, data, source, Path(audio_path), report_path)

    return on_result


def api_recorder(store: ReviewStore, cfg: ReviewConfig) -> Callable:
    """For POST /v1/score: `(result, audio bytes, model version) -> None`; keeps the upload in
    `cfg.uploads_dir` under its content hash (server-made name) so the player can load it."""

    def on_scored(result: dict, data: bytes, version: str) -> None:
        audio_path = _keep_upload(cfg.uploads_dir, data) if cfg.uploads_dir else None
        record(store, result, "api", audio_path, None, None)

    return on_scored


def _keep_upload(folder: Path, data: bytes) -> Path | None:
    import io

    import soundfile as sf

    try:
        fmt = sf.info(io.BytesIO(data)).format
    except Exception:  # noqa: BLE001 - scored already, so decodable; be safe anyway
        fmt = ""
    path = Path(folder) / f"{bytes_id(data)}{UPLOAD_SUFFIX.get(fmt, '.audio')}"
    if not path.exists():
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return path


def api_token(cfg: ReviewConfig) -> str | None:
    """The token POST /v1/score requires (made in `cfg.token_file` on first use), or None."""
    if not cfg.require_token:
        return None
    path = Path(cfg.token_file)
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        logger.warning("made an API token for POST /v1/score in %s", path)
    return path.read_text().strip()
