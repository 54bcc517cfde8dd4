"""Low file helpers: a file's bytes -> its content id, and atomic writes (temp name, rename).

No audio knowledge here; every layer may import this module.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

_BLOCK_BYTES = 1 << 20
TMP_PREFIX = ".tmp-"  # temp_path() names: .tmp-<pid>-<random>-<name>


def sha256_file(path: str | Path) -> str:
    """Full SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def content_id(path: str | Path) -> str:
    """`call_id`: first 16 hex digits of the SHA-256 of the file's bytes."""
    return sha256_file(path)[:16]


def bytes_id(data: bytes) -> str:
    """`content_id` of in-memory bytes."""
    return hashlib.sha256(data).hexdigest()[:16]


def default_file_mode() -> int:
    """0o666 less the process umask: the mode `open()` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class atomic_path:
    """Context manager yielding a temp path beside `path`, renamed onto it on success.

    On an exception the temp file is removed and `path` is left as it was, so a reader sees
    either the old file or the complete new one.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.chmod(self.tmp, default_file_mode())  # mkstemp makes 0600 files
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def temp_path(folder: str | Path, name: str) -> Path:
    """A fresh temp name for `name` in `folder`, tagged with this process's id.

    Hidden (leading dot), so folder listings skip it; `remove_dead_temps` removes it once the
    process that made it has ended.
    """
    return Path(folder) / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{name}"


def remove_dead_temps(folder: str | Path) -> int:
    """Delete `temp_path` files and folders in `folder` whose process has ended; count them."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for p in folder.glob(f"{TMP_PREFIX}*"):
        pid = p.name[len(TMP_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def replace_dir(tmp: Path, dest: Path) -> None:
    """Move a finished temp folder onto `dest` (a folder rename cannot overwrite a full one).

    When another process published `dest` in the meantime, its folder is kept.
    """
    old = None
    if dest.exists():
        old = temp_path(dest.parent, f"old-{dest.name}")
        os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except OSError:
        if not dest.is_dir():  # not another process winning the same race: a real error
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
