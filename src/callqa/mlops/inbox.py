"""The exactly-once inbox: audio dropped in `flows.inbox_dir` is scored once, by content.

A SQLite ledger (WAL) keyed by the file's sha256 records each file as `claimed` (pid, host,
time), `done` or `quarantined` (code, message). One file goes:

    hash -> ledger says done/quarantined? move it aside, never score it again
         -> claim (atomic) -> score -> result line in results.jsonl (flushed, under a lock)
         + HTML report -> move to done_dir -> mark done
    AudioError -> move to quarantine_dir with <name>.reason.txt -> mark quarantined

A claim whose process died (SIGKILL, crash) is taken over by the next pass; the ledger remembers
whether the result line was written and where the file goes, so a resumed file never gets a
second line and a file already moved is only marked done. No Prefect here: the `score_inbox`
flow and `callqa inbox` both call `run_inbox` / `process_one`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import sqlite3
import time
from pathlib import Path

from callqa.audio.io import SCAN_EXTENSIONS, AudioError, unreadable_error
from callqa.config import FlowsConfig
from callqa.files import sha256_file

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart", ".download")
SETTLE_S = 2.0  # a file modified more recently than this is checked for growth first
STALLED_COPY_S = 600.0  # a WAV shorter than its header says is waited for this long
MAX_INTERNAL_FAILURES = 3  # a file that crashes the scorer this often is quarantined
OUTCOMES = ("scored", "quarantined", "duplicate", "resumed", "busy", "gone", "failed")

_SCHEMA = """CREATE TABLE IF NOT EXISTS ledger (
    hash TEXT PRIMARY KEY, state TEXT NOT NULL, name TEXT, dest TEXT, pid INTEGER, host TEXT,
    pid_start TEXT,
    claimed_at REAL, attempts INTEGER DEFAULT 1, result_written INTEGER DEFAULT 0,
    failures INTEGER DEFAULT 0, code TEXT, message TEXT, updated_at REAL)"""


def _proc_start(pid: int) -> str | None:
    """The process's start time (/proc/PID/stat field 22), or None: guards against pid reuse."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped is a zombie: gone for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return True
    return stat[0] != "Z" and (start is None or stat[19] == start)  # else: a reused pid


class Ledger:
    """Content hash -> outcome. Safe across threads and processes (one connection per call)."""

    def __init__(self, path: str | Path, stale_s: float = 0.0, max_claim_s: float = 3600.0):
        """`stale_s`: a claim this old whose process is gone (same host; pid and start time)
        is reclaimable;
        `max_claim_s`: any claim this old is (its process may live on another host)."""
        self.path, self.stale_s, self.max_claim_s = Path(path), stale_s, max_claim_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.row_factory = sqlite3.Row
        return _Closing(db)

    def get(self, digest: str) -> dict | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM ledger WHERE hash = ?", (digest,)).fetchone()
        return dict(row) if row else None

    def claim(self, digest: str, name: str = "", dest: str = "") -> tuple[str, dict]:
        """Atomically claim `digest`: ("new" | "reclaimed" | "busy" | "done" | "quarantined",
        the row as it is now). Only "new" and "reclaimed" may go on to score."""
        now = time.time()
        me = (os.getpid(), socket.gethostname(), _proc_start(os.getpid()))
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT * FROM ledger WHERE hash = ?", (digest,)).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO ledger (hash, state, name, dest, pid, host, pid_start, "
                        "claimed_at, updated_at) VALUES (?, 'claimed', ?, ?, ?, ?, ?, ?, ?)",
                        (digest, name, dest, *me, now, now),
                    )
                    verdict = "new"
                elif row["state"] != "claimed":
                    verdict = row["state"]
                elif self._stale(row, now):
                    db.execute(
                        "UPDATE ledger SET pid = ?, host = ?, pid_start = ?, claimed_at = ?, "
                        "updated_at = ?, "
                        "attempts = attempts + 1 WHERE hash = ?",
                        (*me, now, now, digest),
                    )
                    verdict = "reclaimed"
                else:
                    verdict = "busy"
                row = db.execute("SELECT * FROM ledger WHERE hash = ?", (digest,)).fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return verdict, dict(row)

    def _stale(self, row, now: float) -> bool:
        age = now - (row["claimed_at"] or 0)
        if age >= self.max_claim_s:
            return True
        if row["host"] != socket.gethostname() or age < self.stale_s:
            return False
        return not _pid_alive(row["pid"], row["pid_start"])

    def update(self, digest: str, **values) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self._db() as db:
            db.execute(
                f"UPDATE ledger SET {cols}, updated_at = ? WHERE hash = ?",  # noqa: S608 - our keys
                (*values.values(), time.time(), digest),
            )

    def release(self, digest: str) -> None:
        """A claim given back after an internal error: the next pass tries again."""
        failures = (self.get(digest) or {}).get("failures", 0) + 1
        self.update(digest, pid=0, host="", claimed_at=0, failures=failures)

    def counts(self) -> dict[str, int]:
        with self._db() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM ledger GROUP BY state").fetchall()
        return {r[0]: r[1] for r in rows}


class _Closing:
    """`with` that closes the sqlite3 connection (sqlite3's own only ends a transaction)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc) -> None:
        self.db.close()


def scan(cfg: FlowsConfig, settle_s: float = SETTLE_S, check_s: float = 0.5) -> list[Path]:
    """Audio files at the top of `inbox_dir`, sorted, without hidden or partial names and
    without files still being written (modified in the last `settle_s` and growing)."""
    inbox = Path(cfg.inbox_dir)
    if not inbox.is_dir():
        logger.warning("%s: no such folder (flows.inbox_dir): nothing to score", inbox)
        return []
    entries = [
        p
        for p in sorted(inbox.iterdir())
        if not p.name.startswith(".") and not p.name.lower().endswith(PARTIAL_SUFFIXES)
    ]
    found = {p: p.stat() for p in entries if p.is_file() and p.suffix.lower() in SCAN_EXTENSIONS}
    ignored = [p.name for p in entries if p not in found]
    if ignored:  # said every pass: they stay in the inbox until someone moves them
        names = ", ".join(ignored[:5]) + (" ..." if len(ignored) > 5 else "")
        logger.warning("%s: %d entries are not audio files (by extension) at its top level and "
                       "are left there: %s", inbox, len(ignored), names)  # fmt: skip
    for p, st in list(found.items()):
        if time.time() - st.st_mtime < STALLED_COPY_S and _short_of_header(p, st.st_size):
            logger.info("%s: shorter than its WAV header says (a copy under way?): next pass", p)
            found.pop(p)
    young = [p for p, st in found.items() if time.time() - st.st_mtime < settle_s]
    if young:
        time.sleep(check_s)
    for p in young:
        try:
            st = p.stat()
        except FileNotFoundError:
            found.pop(p)
            continue
        if (st.st_size, st.st_mtime_ns) != (found[p].st_size, found[p].st_mtime_ns):
            logger.info("%s: still being written, left for the next pass", p)
            found.pop(p)
    return list(found)


NAME_BYTES = 240  # a file name's limit is 255 bytes; room is left for ".reason.txt"


def _short_of_header(path: Path, size: int) -> bool:
    """A RIFF/WAVE file whose header promises more bytes than it holds: a copy that paused
    (a writer that streams puts 0 or 0xFFFFFFFF there, which promises nothing)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False
    riff = int.from_bytes(head[4:8], "little")
    return 0 < riff < 0xFFFFFFFF and riff + 8 > size


def _destination(folder: Path, name: str, digest: str) -> Path:
    """`folder/name`, or `folder/<hash12>-name` when that name is taken or too long (the
    stem is then cut so the name, its hash prefix and `.reason.txt` fit in 255 bytes)."""
    dest = folder / name
    if len(name.encode()) <= NAME_BYTES and not dest.exists():
        return dest
    stem, suffix = Path(name).stem, Path(name).suffix
    room = NAME_BYTES - 13 - len(suffix.encode())
    stem = stem.encode()[:room].decode(errors="ignore")
    return folder / f"{digest[:12]}-{stem}{suffix}"


def _move(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)  # same filesystem: a rename; the name was checked free


def _append_result(results: Path, line: str, call_id: str, check_existing: bool) -> bool:
    """Append one line under an exclusive lock; False when `call_id` already has one."""
    results.parent.mkdir(parents=True, exist_ok=True)
    with open(results, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released on close, and by the kernel when killed
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":  # a line cut short by a killed writer: drop it
                f.seek(0)
                data = f.read()
                f.truncate(data.rfind(b"\n") + 1)
                logger.warning("%s: dropped a last line cut short by a killed run", results)
        if check_existing:
            f.seek(0)
            for raw in f:
                try:
                    if json.loads(raw).get("call_id") == call_id:
                        return False
                except ValueError:
                    continue
        f.write(line.encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return True


def process_one(
    path: Path, scorer, cfg: FlowsConfig, ledger: Ledger | None = None, on_result=None
) -> str:
    """Score one inbox file exactly once. `scorer`: a Scorer, or a no-argument callable that
    returns one (called only when the file must be scored). `on_result(result, audio path,
    report path)` is called once the line is written (the review database; errors logged).

    Returns "scored", "quarantined", "duplicate" (its content was already handled; the file is
    moved aside), "resumed" (a dead run's claim was finished), "busy" (another live run holds
    it) or "gone" (it left the inbox after the scan: another run took it). Errors other than
    AudioError give the claim back and raise (the next pass retries; after
    MAX_INTERNAL_FAILURES the file is quarantined as `internal_error`).
    """
    from callqa.qa.report import write_report
    from callqa.schemas import SAMPLE_RATE_HZ

    path, ledger = Path(path), ledger or Ledger(cfg.ledger)
    done_dir, quarantine_dir = Path(cfg.done_dir), Path(cfg.quarantine_dir)
    try:
        digest = sha256_file(path)
    except FileNotFoundError:
        return _gone(path)
    except OSError as err:  # no content, no ledger key: set it aside with its reason
        return _set_aside(path, cfg, unreadable_error(path, err))
    dest = _destination(done_dir, path.name, digest)
    verdict, row = ledger.claim(digest, path.name, str(dest))
    if verdict in ("done", "quarantined"):
        folder = done_dir if verdict == "done" else quarantine_dir
        moved = _destination(folder, path.name, digest)
        if verdict == "quarantined":  # each file in quarantine/ has its reason beside it
            message = f"{row['message']} (same content as {row['name']})"
            _write_reason(moved, row["code"], message, digest)
        try:
            _move(path, moved)
        except FileNotFoundError:  # the run that handled it moved it after our scan
            if verdict == "quarantined" and not moved.exists():
                moved.with_name(moved.name + ".reason.txt").unlink(missing_ok=True)
            return _gone(path)
        logger.info("%s: same content as %s (%s): not scored again", path, row["name"], verdict)
        return "duplicate"
    if verdict == "busy":
        return "busy"
    resumed = verdict == "reclaimed"
    if resumed and row["result_written"]:
        dest = Path(row["dest"]) if not Path(row["dest"]).exists() else dest
    elif row["failures"] >= MAX_INTERNAL_FAILURES:
        return _quarantine(path, digest, ledger, cfg, "internal_error", "scoring failed "
                           f"{row['failures']} times; see the logs")  # fmt: skip
    else:
        scorer = scorer() if not hasattr(scorer, "score_path") else scorer
        try:
            scored = scorer.score_path(path)
        except AudioError as err:
            return _quarantine(path, digest, ledger, cfg, err.code, err.message)
        except BaseException:
            ledger.release(digest)
            raise
        result = scored.result.model_copy(update={"path": str(dest)})  # where it will live
        try:  # the report first (an atomic rename): a written line implies its report
            write_report(result, scored.tracks, SAMPLE_RATE_HZ, Path(cfg.results_dir))
        except Exception:  # noqa: BLE001 - the result line matters; the report is extra
            logger.exception("%s: writing the HTML report failed", path)
        results = Path(cfg.results_dir) / RESULTS_FILE
        if not _append_result(results, result.model_dump_json(), result.call_id, resumed):
            logger.info("%s: result line already written by an interrupted run", path)
        ledger.update(digest, result_written=1, dest=str(dest))
        if on_result is not None:
            report = Path(cfg.results_dir) / f"{result.call_id}.html"
            try:  # the store ignores a call it holds already, so a resumed file is safe
                on_result(result, dest, report if report.is_file() else None)
            except Exception:  # noqa: BLE001 - the line is written; the copy is logged
                logger.exception("%s: handing the result on failed", path)
    _move(path, dest)
    ledger.update(digest, state="done", dest=str(dest))
    return "resumed" if resumed else "scored"


def _gone(path: Path) -> str:
    logger.info("%s: no longer in the inbox (another run took it): nothing to do", path)
    return "gone"


def _quarantine(path, digest, ledger, cfg, code: str, message: str) -> str:
    dest = _destination(Path(cfg.quarantine_dir), path.name, digest)
    _write_reason(dest, code, message, digest)
    _move(path, dest)
    ledger.update(digest, state="quarantined", code=code, message=message, dest=str(dest))
    logger.warning("%s: quarantined (%s: %s)", path, code, message)
    return "quarantined"


def _write_reason(dest: Path, code: str, message: str, digest: str | None = None) -> None:
    """`<dest>.reason.txt`: the code, the message and the content hash (when known)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = f"{code}\n{message}\n" + (f"sha256 {digest}\n" if digest else "")
    dest.with_name(dest.name + ".reason.txt").write_text(text, encoding="utf-8")


def _set_aside(path: Path, cfg: FlowsConfig, err: AudioError) -> str:
    """Quarantine a file this process cannot read (no content hash, so no ledger row)."""
    stamp = hashlib.sha256(f"{path}:{time.time_ns()}".encode()).hexdigest()
    dest = _destination(Path(cfg.quarantine_dir), path.name, stamp)
    _write_reason(dest, err.code, err.message)
    _move(path, dest)
    logger.warning("%s: quarantined (%s: %s)", path, err.code, err.message)
    return "quarantined"


def recover(cfg: FlowsConfig, ledger: Ledger) -> int:
    """Claims of dead runs whose file was already moved to done_dir: mark them done."""
    with ledger._db() as db:
        rows = db.execute("SELECT * FROM ledger WHERE state = 'claimed'").fetchall()
    fixed = 0
    for row in rows:
        dest = Path(row["dest"] or "")
        try:
            if row["result_written"] and dest.is_file() and ledger._stale(row, time.time()):
                if sha256_file(dest) == row["hash"]:
                    ledger.update(row["hash"], state="done")
                    fixed += 1
        except OSError as err:  # one bad row must not stop the pass (its file is retried)
            logger.warning("ledger row %s: recovery skipped (%s)", row["hash"][:12], err)
    return fixed


def run_inbox(cfg: FlowsConfig, scorer_factory, on_result=None) -> dict:
    """One pass over the inbox; `scorer_factory()` is called once, only if a file needs it.
    `on_result`: see `process_one`."""
    t0, ledger = time.perf_counter(), Ledger(cfg.ledger)
    cache: list = []

    def scorer():
        if not cache:
            cache.append(scorer_factory())
        return cache[0]

    counts = dict.fromkeys(OUTCOMES, 0)
    counts["resumed"] += recover(cfg, ledger)
    for path in scan(cfg):
        try:
            counts[process_one(path, scorer, cfg, ledger, on_result)] += 1
        except Exception:  # noqa: BLE001 - one file must not stop the pass; it is retried
            logger.exception("%s: scoring failed; left in the inbox for the next pass", path)
            counts["failed"] += 1
    summary = {**counts, "ledger": ledger.counts(), "wall_s": round(time.perf_counter() - t0, 1)}
    summary["results"] = str(Path(cfg.results_dir) / RESULTS_FILE)
    logger.info("inbox: %s", json.dumps(summary))
    return summary
