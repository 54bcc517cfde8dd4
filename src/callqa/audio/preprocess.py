"""`callqa preprocess`: accepted.parquet -> one folder per file of 16 kHz role tracks, VAD
speech, input stats and log-mel (the signal work is `audio.prepare.prepare`; this module stores
it). Layout:

    out_dir/<id>/
      agent.flac, customer.flac   16 kHz PCM_16 role audio (stereo input), or
      mono.flac                   16 kHz PCM_16 audio (mono input: roles come from diarization)
      prepared.json               roles_from, tracks, VAD speech per track (seconds), input stats
                                  of the decoded audio, duration, source rate/channels/subtype
      logmel.npy                  float16 (n_tracks, n_mels, frames) log-mel of the conditioned
                                  audio, tracks in the order of prepared.json "tracks"

Nothing else is written to out_dir (downstream stages list its folders). Files that fail are in
the returned summary (`failures`: id, path, code, message) and the log.

`load_prepared(out_dir / id)` reads a folder back into a `Prepared`. The work is cached per
file as a folder entry of `callqa.cache` (`<cache root>/preprocess/`), outside the DVC outs;
the outs are hard links (or copies) of the entry's files, so `dvc repro` deleting them costs
nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from callqa.audio.io import AudioError, load_audio, probe
from callqa.audio.prepare import Prepared, prepare
from callqa.cache import StageCache, library_versions
from callqa.config import PreprocessConfig
from callqa.files import atomic_path, content_id, remove_dead_temps, replace_dir, temp_path
from callqa.progress import track

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # layout of out_dir/<id>/ (what load_prepared reads)
# Cache code version: bump when the same file and params would give other output.
# 2: batched Silero VAD and scipy BS.1770 loudness (ae4d98e); 3: DC offset removed before the
# role split, the VAD and the role tracks (a9eef14); 4: crosstalk silenced on two-channel
# calls (audio/crosstalk.py). Entries of older code are never read.
CODE_VERSION = 4
# What shapes the output besides our code: decoding, resampling, VAD weights, STFT, loudness.
LIBRARIES = ("numpy", "scipy", "torch", "torchaudio", "silero-vad", "soundfile", "libsndfile")
META_FILE = "prepared.json"
LOGMEL_FILE = "logmel.npy"
# Params that only say where files are or how fast to go: they do not change the output.
_PARAMS_NOT_HASHED = {"accepted", "out_dir", "workers", "progress"}


# ---------------------------------------------------------------------------------------------
# On disk
# ---------------------------------------------------------------------------------------------


def save_prepared(p: Prepared, folder: Path, extra: dict | None = None) -> dict:
    """Write a `Prepared` into `folder` (each file under a temp name, then renamed).

    prepared.json is written last and lists every other file with its size, so a folder with
    a missing or truncated file is recognisable. Returns the JSON written.
    """
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, samples in p.tracks.items():
        path = folder / f"{name}.flac"
        pcm = np.clip(np.round(samples.astype(np.float64) * 32768), -32768, 32767)
        pcm = pcm.astype(np.int16)
        with atomic_path(path) as tmp:
            sf.write(str(tmp), pcm, p.track_sample_rate_hz, subtype="PCM_16", format="FLAC")
        files[path.name] = path.stat().st_size
    with atomic_path(folder / LOGMEL_FILE) as tmp, open(tmp, "wb") as f:
        # float16 halves the size; log-mel values (about -23..10) keep ~0.01 precision.
        np.save(f, p.logmel.astype(np.float16))
    files[LOGMEL_FILE] = (folder / LOGMEL_FILE).stat().st_size
    meta = {
        "format_version": FORMAT_VERSION,
        "roles_from": p.roles_from,
        "mono_reason": p.mono_reason,
        "tracks": list(p.tracks),
        "track_sample_rate_hz": p.track_sample_rate_hz,
        "speech": {k: [[s, e] for s, e in v] for k, v in p.speech.items()},
        "input_stats": p.input_stats,
        "duration_s": round(p.duration_s, 3),
        "sample_rate_hz": p.sample_rate_hz,
        "channels": p.channels,
        "subtype": p.subtype,
        "logmel_shape": list(p.logmel.shape),
        "files": files,
        **(extra or {}),
    }
    with atomic_path(folder / META_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def read_meta(folder: Path) -> dict | None:
    """prepared.json of a folder if it and every file it lists are there at their sizes."""
    try:
        meta = json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            return None
        for name, size in meta["files"].items():
            if (Path(folder) / name).stat().st_size != size:
                return None
        return meta
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def load_prepared(folder: str | Path) -> Prepared:
    """Read `out_dir/<id>/` back. Raises FileNotFoundError naming the folder if incomplete."""
    import soundfile as sf

    folder = Path(folder)
    meta = read_meta(folder)
    if meta is None:
        raise FileNotFoundError(
            f"{folder}: no complete preprocessed call here (prepared.json missing, stale or a "
            "file is truncated); run `callqa preprocess` again"
        )
    tracks = {}
    for name in meta["tracks"]:
        pcm, _ = sf.read(str(folder / f"{name}.flac"), dtype="int16")
        tracks[name] = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
    return Prepared(
        tracks=tracks,
        roles_from=meta["roles_from"],
        speech={k: [(float(s), float(e)) for s, e in v] for k, v in meta["speech"].items()},
        logmel=np.load(folder / LOGMEL_FILE).astype(np.float32),
        input_stats=meta["input_stats"],
        duration_s=float(meta["duration_s"]),
        sample_rate_hz=int(meta["sample_rate_hz"]),
        channels=int(meta["channels"]),
        mono_reason=meta.get("mono_reason"),
        subtype=meta.get("subtype", ""),
        track_sample_rate_hz=int(meta["track_sample_rate_hz"]),
        extra={k: meta[k] for k in ("id",) if k in meta},
    )


# ---------------------------------------------------------------------------------------------
# Stage
# ---------------------------------------------------------------------------------------------


def stage_cache(
    cfg: PreprocessConfig, root: Path | None = None, libraries: dict | None = None
) -> StageCache:
    """The preprocess cache: params that change the output (not paths or speed knobs), the code
    version, Silero VAD's weights (shipped in its package), CPU float32, library versions."""
    versions = libraries if libraries is not None else library_versions(LIBRARIES)
    return StageCache(
        "preprocess",
        CODE_VERSION,
        params=cfg.model_dump(mode="json", exclude=_PARAMS_NOT_HASHED),
        model=f"silero-vad=={versions.get('silero-vad')}",
        device="cpu",
        compute_type="float32",
        libraries=versions,
        root=root,
    )


def _prepare_entry(path: str, expected_id: str, cache: StageCache, cfg: PreprocessConfig) -> dict:
    """Do (or find in the cache) one file. Runs in a worker process when workers > 1."""
    result = {"id": expected_id, "path": path}
    try:
        probe(path)  # missing, empty or not audio: the AudioError code says which
        cid = content_id(path)
        if cid != expected_id:
            raise AudioError(
                "content_changed",
                f"{path}: content id is {cid} but accepted.parquet says {expected_id}; the file "
                "changed after ingest: run `callqa ingest` and `callqa validate` again",
            )
        entry = cache.get_dir(cid)
        meta = read_meta(entry) if entry is not None else None
        status = "cached"
        if meta is None:
            status = "processed"
            prepared = prepare(load_audio(path), cfg)
            # the key in prepared.json: an out folder made under another key is rebuilt
            extra = {"id": cid, "cache_key": cache.key(cid).name}
            entry = cache.put_dir(cid, lambda tmp: save_prepared(prepared, tmp, extra=extra))
            meta = read_meta(entry)
        result.update(status=status, entry=str(entry), duration_s=meta["duration_s"])
        result.update(roles_from=meta["roles_from"], tracks=meta["tracks"])
    except AudioError as err:
        result.update(status="failed", code=err.code, message=err.message)
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the batch
        logger.debug("preprocess failed on %s", path, exc_info=True)
        result.update(status="failed", code="preprocess_failed", message=f"{path}: {err!r}")
    return result


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(src, dst)


def _publish(entry: Path, dest: Path) -> None:
    """Rebuild `out_dir/<id>/` from a cache entry, unless it already holds the same files."""
    meta = read_meta(entry)
    if meta is None:
        raise OSError(f"cache entry {entry} went missing or was damaged while the stage ran")
    names = [*meta["files"], META_FILE]
    current = read_meta(dest)
    if current == meta and all((dest / n).exists() for n in names):
        return
    tmp = temp_path(dest.parent, dest.name)
    tmp.mkdir(parents=True)
    try:
        for name in names:
            _link_or_copy(entry / name, tmp / name)
        replace_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_accepted(path: Path):
    import pandas as pd

    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; run `callqa validate` first")
    df = pd.read_parquet(path)
    missing = {"id", "path"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected at least id, path")
    return df


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _prepare_all(items: list[tuple[str, str]], cache: StageCache, cfg: PreprocessConfig):
    """Yield one result per (id, path), in order of completion (a process pool if workers > 1)."""
    if cfg.workers <= 1 or len(items) <= 1:
        for cid, path in items:
            yield _prepare_entry(path, cid, cache, cfg)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // cfg.workers)
    # spawn: forking after torch/onnxruntime thread pools started can hang (STACK_NOTES)
    with ProcessPoolExecutor(
        cfg.workers,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads,),
    ) as pool:
        futures = [pool.submit(_prepare_entry, path, cid, cache, cfg) for cid, path in items]
        for fut in as_completed(futures):
            yield fut.result()


def run(
    cfg: PreprocessConfig,
    accepted: Path | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> dict:
    """Preprocess every accepted file into `out_dir/<id>/`, reusing the per-file cache.

    Args:
        cfg: the `preprocess` params section.
        accepted: accepted.parquet (default `cfg.accepted`).
        out_dir: output folder (default `cfg.out_dir`); folders of ids no longer accepted, or
            that failed this time, are removed.
        progress: show a progress bar (also needs `cfg.progress`).
        cache_dir: cache root (default `callqa.cache.cache_root()`).

    Returns:
        Summary: n_files, processed, cached, failed, audio_s, wall_s, out_dir, failures (list of
        {id, path, code, message}).
    """
    t0 = time.perf_counter()
    accepted = Path(accepted or cfg.accepted)
    out_dir = Path(out_dir or cfg.out_dir)
    cache = stage_cache(cfg, root=cache_dir)
    df = _read_accepted(accepted)
    items = sorted({str(r.id): str(r.path) for r in df[["id", "path"]].itertuples()}.items())
    out_dir.mkdir(parents=True, exist_ok=True)
    cache.sweep()
    remove_dead_temps(out_dir)

    def finish(res: dict) -> dict:
        if res["status"] != "failed":
            try:
                _publish(Path(res["entry"]), out_dir / res["id"])
            except OSError as err:
                res.update(status="failed", code="write_failed", message=f"{out_dir}: {err}")
        if res["status"] == "failed":
            logger.warning(
                "preprocess: %s failed (%s): %s", res["path"], res["code"], res["message"]
            )
        return res

    results = [
        finish(res)
        for res in track(
            _prepare_all(items, cache, cfg),
            "preprocess",
            enabled=progress and cfg.progress,
            total=len(items),
        )
    ]
    results.sort(key=lambda r: r["id"])
    ok = [r for r in results if r["status"] != "failed"]
    failed = [r for r in results if r["status"] == "failed"]
    ok_ids = {r["id"] for r in ok}
    for d in out_dir.iterdir():
        if d.is_dir() and not d.name.startswith(".") and d.name not in ok_ids:
            if (d / META_FILE).exists():  # only folders this stage made
                shutil.rmtree(d, ignore_errors=True)
    failures = [{k: r[k] for k in ("id", "path", "code", "message")} for r in failed]
    summary = {
        "n_files": len(items),
        "processed": sum(r["status"] == "processed" for r in results),
        "cached": sum(r["status"] == "cached" for r in results),
        "failed": len(failed),
        "audio_s": round(sum(r["duration_s"] for r in ok), 3),
        "wall_s": round(time.perf_counter() - t0, 3),
        "out_dir": str(out_dir),
        "failures": failures,
    }
    logger.debug(
        "preprocess: %d files (%d processed, %d cached, %d failed), %.1f s of audio in %.1f s",
        summary["n_files"],
        summary["processed"],
        summary["cached"],
        summary["failed"],
        summary["audio_s"],
        summary["wall_s"],
    )
    return summary
