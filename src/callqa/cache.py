"""The one per-file cache: (stage, input content + everything that shapes the output) -> entry.

Every cached stage (validate's audio stats, preprocess, transcribe, featurize) holds one
`StageCache`. An entry's key is a `CacheKey`: content hash of the input, the stage's params, a
code version the stage declares, model identity (weights hash or package version), device and
compute type, and the versions of the libraries that shape the output. Change any part and the
lookup misses. Layout: `<root>/<stage>/<content>-<hash of the rest>[.bin]`, root =
`$CALLQA_CACHE_DIR` (default `.cache/callqa`), outside the DVC outs.

Entries are a file (`get_bytes`/`put_bytes`, `get_json`/`put_json`, `get_arrays`/`put_arrays`)
or a folder (`get_dir`/`put_dir`). Both are written under a temp name and renamed, and carry
their key and the SHA-256 of their bytes; an entry that is half-written, truncated or damaged is
a miss and is replaced by the next `put_*`.

Example (a featurize stage):
    >>> cache = StageCache("featurize", code_version=1, params={"pooling": "mean"},
    ...                    model=weights_id("models/encoder"), device="cpu",
    ...                    compute_type="float32", libraries=library_versions(["torch"]))
    >>> feats = cache.get_arrays(call_id)  # doctest: +SKIP
    >>> if feats is None: cache.put_arrays(call_id, {"emb": emb})  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from callqa.files import (
    default_file_mode,
    remove_dead_temps,
    replace_dir,
    sha256_file,
    temp_path,
)

logger = logging.getLogger(__name__)

CACHE_ENV = "CALLQA_CACHE_DIR"
DEFAULT_ROOT = Path(".cache/callqa")
STAGES = ("validate", "preprocess", "transcribe", "featurize")
ENTRY_FILE = "cache-entry.json"  # a folder entry's key and file checksums, written last
FILE_SUFFIX = ".bin"


def cache_root() -> Path:
    """`$CALLQA_CACHE_DIR`, default `.cache/callqa` (relative to the working directory)."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_ROOT)


@lru_cache(maxsize=256)
def _version(name: str) -> str | None:
    if name == "libsndfile":  # the C library behind soundfile decodes every file
        import soundfile

        return soundfile.__libsndfile_version__
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def library_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution (None if absent); `libsndfile` is the C library."""
    return {name: _version(name) for name in sorted(names)}


@lru_cache(maxsize=16)
def _tree_sha256(path: str, stamp: tuple) -> str:
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(root).as_posix() if p != root else p.name}\0".encode())
        h.update(bytes.fromhex(sha256_file(p)))
    return h.hexdigest()[:32]


def weights_id(model: str | Path) -> str:
    """Identity of a model: `sha256:<hash>` of a local file or folder's bytes, else the name.

    A hub id or size name ("tiny.en") is returned as given: pair it with the version of the
    package that resolves it. Hashing is remembered per path, size and mtime within a process.
    """
    path = Path(model).expanduser()
    if not path.exists():
        return str(model)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return f"sha256:{_tree_sha256(str(path.resolve()), stamp)}"


@dataclass(frozen=True)
class CacheKey:
    """Everything that decides a stage's output for one input; `name` is the entry's file name."""

    content: str  # content hash of the input (file bytes, or the arrays a stage reads)
    code_version: int | str  # the stage's own version: bump when the same input gives new output
    params: Mapping = field(default_factory=dict)  # stage params that shape the output
    model: str | None = None  # weights_id() or "<package>==<version>"
    device: str | None = None
    compute_type: str | None = None
    libraries: Mapping[str, str | None] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self), sort_keys=True, default=str))

    @property
    def name(self) -> str:
        rest = {k: v for k, v in self.as_dict().items() if k != "content"}
        digest = hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()
        return f"{self.content[:32]}-{digest[:16]}"


class StageCache:
    """The cache of one stage: fixed params/code/model/device/libraries, one entry per content.

    Args:
        stage: folder name under the root (one of `STAGES`).
        code_version: the stage's declared code version.
        params: the params that shape the output (not paths, workers or progress switches).
        model: model identity (`weights_id(...)` or a package version), if the stage has one.
        device, compute_type: where and at what precision the model runs.
        libraries: `library_versions([...])` of the packages that shape the output.
        root: cache root (default `cache_root()`).
    """

    def __init__(
        self,
        stage: str,
        code_version: int | str,
        params: Mapping | None = None,
        model: str | None = None,
        device: str | None = None,
        compute_type: str | None = None,
        libraries: Mapping[str, str | None] | None = None,
        root: Path | None = None,
    ):
        if stage not in STAGES:
            raise ValueError(f"unknown cache stage {stage!r}; known: {', '.join(STAGES)}")
        self.stage = stage
        self.dir = Path(root or cache_root()) / stage
        self._fixed = dict(
            code_version=code_version,
            params=dict(params or {}),
            model=model,
            device=device,
            compute_type=compute_type,
            libraries=dict(libraries or {}),
        )

    def key(self, content: str) -> CacheKey:
        return CacheKey(content=content, **self._fixed)

    # -- file entries ----------------------------------------------------------------------

    def file_path(self, content: str) -> Path:
        return self.dir / f"{self.key(content).name}{FILE_SUFFIX}"

    def get_bytes(self, content: str) -> bytes | None:
        """The payload stored for `content`, or None (absent, other key, truncated, damaged)."""
        key, path = self.key(content), self.file_path(content)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            head, payload = raw.split(b"\n", 1)
            meta = json.loads(head)
            ok = (
                meta["key"] == key.as_dict()
                and meta["size"] == len(payload)
                and meta["sha256"] == hashlib.sha256(payload).hexdigest()
            )
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            logger.warning("%s cache: ignoring a damaged entry %s", self.stage, path)
            return None
        return payload

    def put_bytes(self, content: str, payload: bytes) -> Path:
        """Store `payload` for `content` (temp file, fsync, rename); returns the entry path."""
        key, path = self.key(content), self.file_path(content)
        head = {
            "key": key.as_dict(),
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(self.dir, path.name)
        try:
            with open(tmp, "wb") as f:
                f.write(json.dumps(head, sort_keys=True).encode() + b"\n")
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, default_file_mode())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def get_json(self, content: str):
        payload = self.get_bytes(content)
        return None if payload is None else json.loads(payload)

    def put_json(self, content: str, value) -> Path:
        return self.put_bytes(content, json.dumps(value, sort_keys=True).encode())

    def get_arrays(self, content: str) -> dict | None:
        """Named numpy arrays stored with `put_arrays` (an .npz payload), or None."""
        import numpy as np

        payload = self.get_bytes(content)
        if payload is None:
            return None
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    def put_arrays(self, content: str, arrays: Mapping) -> Path:
        import numpy as np

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return self.put_bytes(content, buf.getvalue())

    # -- folder entries --------------------------------------------------------------------

    def dir_path(self, content: str) -> Path:
        return self.dir / self.key(content).name

    def get_dir(self, content: str) -> Path | None:
        """The folder stored for `content` if complete and unchanged (every file's SHA-256)."""
        key, folder = self.key(content), self.dir_path(content)
        if not folder.is_dir():
            return None
        try:
            meta = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
            ok = meta["key"] == key.as_dict() and all(
                sha256_file(folder / name) == digest for name, digest in meta["files"].items()
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            logger.warning("%s cache: ignoring a damaged entry %s", self.stage, folder)
            return None
        return folder

    def put_dir(self, content: str, write: Callable[[Path], object]) -> Path:
        """Store a folder: `write(tmp_folder)` fills a temp folder, which is then renamed.

        An exception from `write` removes the temp folder and leaves any old entry as it was.
        Returns the entry folder.
        """
        key, folder = self.key(content), self.dir_path(content)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(self.dir, folder.name)
        try:
            tmp.mkdir()
            write(tmp)
            files = sorted(p.name for p in tmp.iterdir() if p.is_file() and p.name != ENTRY_FILE)
            meta = {"key": key.as_dict(), "files": {n: sha256_file(tmp / n) for n in files}}
            (tmp / ENTRY_FILE).write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")
            replace_dir(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    # -- housekeeping ----------------------------------------------------------------------

    def sweep(self) -> int:
        """Remove temps that runs killed part-way left behind (a live process's are kept)."""
        return remove_dead_temps(self.dir)


# -- `callqa cache info / clear` --------------------------------------------------------------


def stage_info(stage: str, root: Path | None = None) -> dict:
    """{stage, entries, size_bytes, path} of one stage's cache folder (temps not counted)."""
    folder = Path(root or cache_root()) / stage
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
    size = 0
    for p in entries:
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        size += sum(f.stat().st_size for f in files)
    return {"stage": stage, "entries": len(entries), "size_bytes": size, "path": str(folder)}


def clear(stages: Iterable[str] = STAGES, root: Path | None = None) -> dict[str, int]:
    """Delete the cache folders of `stages`; returns entries removed per stage.

    Preprocess outs are hard links (or copies) of entries, so they stay readable.
    """
    removed = {}
    for stage in stages:
        if stage not in STAGES:
            raise ValueError(f"unknown cache stage {stage!r}; known: {', '.join(STAGES)}")
        removed[stage] = stage_info(stage, root)["entries"]
        shutil.rmtree(Path(root or cache_root()) / stage, ignore_errors=True)
    return removed
