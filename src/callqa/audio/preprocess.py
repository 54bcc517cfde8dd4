"""`callqa preprocess`: decoded audio -> 16 kHz role tracks, VAD speech, input stats, log-mel.

Pure core: `prepare(Audio, cfg) -> Prepared`, with `split_roles`, `condition` and `log_mel`.
Stage: `run(cfg)` reads `accepted.parquet` (`id`, `path`) and writes one folder per file:

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
file in `<cache>/preprocess/<content id>-<params hash>/` (`config.cache_root()`:
`$CALLQA_CACHE_DIR`, default `.cache/callqa`), outside the DVC outs; the outs are hard links
(or copies) of the cache entries, so `dvc repro` deleting them costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from callqa.audio.io import (
    Audio,
    AudioError,
    atomic_path,
    content_id,
    load_audio,
    probe,
    resample,
)
from callqa.audio.metrics import (
    clipped_share,
    finite_or_none,
    loudness_lufs,
    rms_dbfs,
    snr_db,
)
from callqa.audio.vad import detect_speech_many
from callqa.config import PreprocessConfig, cache_root
from callqa.progress import track
from callqa.schemas import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the output layout or any algorithm here changes
CORRELATION_MONO = 0.99  # CONTRACTS: channels this correlated are one signal
SILENT_CHANNEL_DBFS = -60.0  # a channel quieter than this (RMS) carries nobody
MAX_GAIN_DB = 40.0  # loudness normalisation never lifts near-silence further than this
META_FILE = "prepared.json"
LOGMEL_FILE = "logmel.npy"
_ROLE_ORDER = ("agent", "customer")
# Params that only say where files are or how fast to go: they do not change the output.
_PARAMS_NOT_HASHED = {"accepted", "out_dir", "workers", "progress"}


@dataclass
class Prepared:
    """One decoded call, ready for ASR, metrics and features."""

    tracks: dict[str, np.ndarray]  # 16 kHz mono float32 role audio, not normalised
    roles_from: str  # "channels" | "diarization"
    speech: dict[str, list[tuple[float, float]]]  # Silero VAD speech intervals per track
    # (n_tracks, n_mels, frames) float32, of the conditioned audio; None when not asked for
    logmel: np.ndarray | None
    input_stats: dict  # per track, of the decoded audio before any processing
    duration_s: float
    sample_rate_hz: int  # of the original file
    channels: int  # of the original file
    mono_reason: str | None = None  # mono_file | identical_channels | silent_channel | mixdown
    subtype: str = ""
    track_sample_rate_hz: int = SAMPLE_RATE_HZ
    extra: dict = field(default_factory=dict)

    @property
    def mono(self) -> bool:
        return self.roles_from == "diarization"


# ---------------------------------------------------------------------------------------------
# Pure core
# ---------------------------------------------------------------------------------------------


def _correlation(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 20) -> float:
    """Pearson correlation in float64, in chunks (hour-long files stay cheap in memory)."""
    n = a.size
    if n == 0:
        return 0.0
    ma, mb = float(np.mean(a, dtype=np.float64)), float(np.mean(b, dtype=np.float64))
    sab = saa = sbb = 0.0
    for i in range(0, n, chunk):
        x = a[i : i + chunk].astype(np.float64) - ma
        y = b[i : i + chunk].astype(np.float64) - mb
        sab += float(x @ y)
        saa += float(x @ x)
        sbb += float(y @ y)
    den = math.sqrt(saa * sbb)
    return sab / den if den > 0 else 0.0


def remove_dc(x: np.ndarray) -> np.ndarray:
    """The signal minus its mean. Cheap sound cards add a DC offset, and Silero VAD misses
    most speech riding on one (seen: a 0.3 offset lost 4 of 6 turns of a real call)."""
    x = np.asarray(x, dtype=np.float32)
    return x - np.float32(x.mean(dtype=np.float64)) if x.size else x


def split_roles(
    samples: np.ndarray, channel_roles: tuple[str, str] = ("agent", "customer")
) -> tuple[dict[str, np.ndarray], dict[str, list[int]], str | None]:
    """Decide stereo roles vs mono and pick the decoded signal behind each track.

    Stereo with two live, distinct channels -> {"agent", "customer"} (channel i ->
    channel_roles[i]). Everything else is one "mono" track: a mono file; identical channels
    (|correlation| > 0.99); one channel below -60 dBFS (the live one is kept, not a -6 dB mix);
    more than two channels (mixed down: `validate` quarantines those by default, so a user who
    raised `max_channels` gets diarization rather than an error).

    Returns:
        (signal per track at the original rate, decoded channel rows behind each track (for
        clipping), mono reason or None).
    """
    n_ch = samples.shape[0]
    if n_ch == 1:
        return {"mono": samples[0]}, {"mono": [0]}, "mono_file"
    if n_ch > 2:
        logger.warning("%d channels: mixing down to mono, roles from diarization", n_ch)
        return {"mono": samples.mean(axis=0)}, {"mono": list(range(n_ch))}, "mixdown"
    levels = [rms_dbfs(remove_dc(ch)) for ch in samples]  # a DC offset is not a voice
    silent = [lv is None or lv < SILENT_CHANNEL_DBFS for lv in levels]
    if silent[0] != silent[1]:
        live = 0 if silent[1] else 1
        return {"mono": samples[live]}, {"mono": [live]}, "silent_channel"
    if not any(silent):
        corr = _correlation(samples[0], samples[1])
        if corr > CORRELATION_MONO:
            return {"mono": samples.mean(axis=0)}, {"mono": [0, 1]}, "identical_channels"
        if corr < -CORRELATION_MONO:  # phase-inverted copy: a mix would cancel out
            return {"mono": samples[0]}, {"mono": [0, 1]}, "identical_channels"
    by_role = {channel_roles[0]: 0, channel_roles[1]: 1}
    order = [r for r in _ROLE_ORDER if r in by_role]
    return (
        {r: samples[by_role[r]] for r in order},
        {r: [by_role[r]] for r in order},
        None,
    )


def quantise_pcm16(x: np.ndarray) -> np.ndarray:
    """Round float audio onto the 16-bit grid (k / 32768), so the stored FLAC reads back equal."""
    q = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767)
    # + 0.0 turns the -0.0 that rounding leaves into 0.0, as a FLAC read-back has it: the ASR
    # cache hashes the bytes, and `callqa score` must find what `callqa transcribe` stored.
    return (q / 32768.0 + 0.0).astype(np.float32)


def spectral_gate(
    x: np.ndarray,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    n_fft: int = 512,
    hop_length: int = 128,
    n_std: float = 1.5,
    noise_quantile: float = 0.1,
    floor_db: float = -18.0,
) -> np.ndarray:
    """Stationary spectral gating (torch STFT): attenuate bins below a per-frequency noise gate.

    The noise profile comes from the quietest `noise_quantile` of frames; the gate sits
    `n_std` standard deviations above their mean level in dB. The mask is smoothed over
    neighbouring bins and frames (no musical-noise speckle) and attenuates to `floor_db`
    rather than to zero.
    """
    import torch
    import torch.nn.functional as F

    x = np.asarray(x, dtype=np.float32)
    if x.size < 2 * n_fft:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x))
    window = torch.hann_window(n_fft)
    spec = torch.stft(t, n_fft, hop_length, window=window, return_complex=True)
    mag_db = 20 * torch.log10(spec.abs().clamp_min(1e-10))
    energy = spec.abs().pow(2).sum(dim=0)
    k = max(2, int(spec.shape[1] * noise_quantile))
    quiet = torch.topk(energy, min(k, spec.shape[1]), largest=False).indices
    noise = mag_db[:, quiet]
    gate = noise.mean(dim=1) + n_std * noise.std(dim=1, unbiased=False)
    mask = (mag_db > gate[:, None]).float()[None, None]
    mask = F.avg_pool2d(mask, kernel_size=(3, 5), stride=1, padding=(1, 2), count_include_pad=False)
    floor = 10 ** (floor_db / 20)
    gain = floor + (1 - floor) * mask[0, 0]
    y = torch.istft(spec * gain, n_fft, hop_length, window=window, length=x.size)
    return y.numpy().astype(np.float32)


def condition(
    x16k: np.ndarray, cfg: PreprocessConfig, sample_rate_hz: int = SAMPLE_RATE_HZ
) -> np.ndarray:
    """Audio for the log-mel image and the emotion model (never for VAD, ASR or metrics).

    DC removal, pre-emphasis (`cfg.preemphasis`), optional spectral-gating noise reduction
    (`cfg.denoise`), then gain to `cfg.target_lufs`. Silence or audio under 0.4 s has no
    loudness and keeps its level; the gain is capped at +40 dB and so the peak stays <= 1.
    """
    import torch
    import torchaudio.functional as AF

    x = remove_dc(x16k)
    if x.size == 0:
        return x.copy()
    if cfg.preemphasis > 0:
        x = AF.preemphasis(torch.from_numpy(np.ascontiguousarray(x)), cfg.preemphasis).numpy()
    if cfg.denoise:
        x = spectral_gate(x, sample_rate_hz)
    level = loudness_lufs(x, sample_rate_hz)
    if level is not None:
        gain_db = min(cfg.target_lufs - level, MAX_GAIN_DB)
        peak = float(np.max(np.abs(x)))
        if peak > 0:  # a float array would not wrap, but the emotion model expects [-1, 1]
            gain_db = min(gain_db, -20 * math.log10(peak))
        x = x * np.float32(10 ** (gain_db / 20))
    return x.astype(np.float32, copy=False)


def log_mel(x16k: np.ndarray, cfg: PreprocessConfig, chunk_frames: int = 60000) -> np.ndarray:
    """(n_mels, frames) float32 natural-log mel power of 16 kHz audio.

    Frames are centred (reflect padding), frame i at sample i * hop_length; computed in chunks
    of `chunk_frames` so an hour-long call does not build one giant STFT.
    """
    import torch
    import torchaudio

    x = np.asarray(x16k, dtype=np.float32)
    n_frames = 1 + x.size // cfg.hop_length
    pad = cfg.n_fft // 2
    t = torch.from_numpy(np.ascontiguousarray(x))[None]
    mode = "reflect" if x.size > pad else "constant"
    padded = torch.nn.functional.pad(t, (pad, pad + cfg.n_fft), mode=mode)[0]
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate_hz,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        center=False,
        power=2.0,
    )
    parts = []
    for f0 in range(0, n_frames, chunk_frames):
        f1 = min(n_frames, f0 + chunk_frames)
        seg = padded[f0 * cfg.hop_length : (f1 - 1) * cfg.hop_length + cfg.n_fft]
        parts.append(mel(seg)[:, : f1 - f0])
    out = torch.cat(parts, dim=1) if parts else torch.zeros(cfg.n_mels, 0)
    return torch.log(out.clamp_min(1e-10)).numpy().astype(np.float32)


def input_stats(
    source: np.ndarray,
    rows: np.ndarray,
    sample_rate_hz: int,
    subtype: str,
    speech: list[tuple[float, float]],
) -> dict:
    """Stats of decoded audio: loudness, SNR and RMS of `source`; clipping and peak of `rows`.

    Args:
        source: the decoded signal behind one track (original rate, no processing).
        rows: the decoded channels it came from, (k, n): clipping is counted per channel on
            the file's own levels (a mix of near-identical channels hides flat tops).
        sample_rate_hz: original rate; `speech` intervals are in seconds.
        subtype: soundfile subtype (sets the quantisation step for clipping).
        speech: VAD intervals of the track, for SNR.
    """
    return {
        "loudness_lufs": finite_or_none(loudness_lufs(source, sample_rate_hz), 2),
        "clipped_share": finite_or_none(max(clipped_share(r, subtype) for r in rows), 6),
        "snr_db": finite_or_none(snr_db(source, sample_rate_hz, speech), 2),
        "peak": finite_or_none(float(np.max(np.abs(rows))) if rows.size else None, 4),
        "rms_dbfs": finite_or_none(rms_dbfs(source), 2),
    }


def prepare(audio: Audio, cfg: PreprocessConfig, with_logmel: bool = True) -> Prepared:
    """Decoded audio -> role tracks at 16 kHz, VAD speech, input stats and log-mel.

    `with_logmel=False` skips conditioning and the log-mel image (`logmel` is None): scoring
    needs neither until a model reads them.

    Raises:
        AudioError: `nan_samples` when the decoded samples are not all finite.
    """
    x, sr = audio.samples, audio.sample_rate_hz
    if not np.all(np.isfinite(x)):
        raise AudioError("nan_samples", "the decoded audio holds NaN or infinite samples")
    sources, rows, reason = split_roles(x, cfg.channel_roles)
    tracks = {
        name: quantise_pcm16(resample(remove_dc(sig), sr, cfg.sample_rate_hz))
        for name, sig in sources.items()
    }
    # 3 decimals, as stored and as in results (CONTRACTS): memory and disk agree exactly
    found = detect_speech_many(list(tracks.values()), cfg.sample_rate_hz, cfg.vad)
    speech = {
        name: [(round(s, 3), round(e, 3)) for s, e in intervals]
        for name, intervals in zip(tracks, found, strict=True)
    }
    stats = {
        name: input_stats(sources[name], x[rows[name]], sr, audio.subtype, speech[name])
        for name in tracks
    }
    logmel = None
    if with_logmel:
        logmel = np.stack(
            [log_mel(condition(t, cfg, cfg.sample_rate_hz), cfg) for t in tracks.values()]
        )
    return Prepared(
        tracks=tracks,
        roles_from="diarization" if reason else "channels",
        speech=speech,
        logmel=logmel,
        input_stats=stats,
        duration_s=audio.duration_s,
        sample_rate_hz=sr,
        channels=audio.channels,
        mono_reason=reason,
        subtype=audio.subtype,
        track_sample_rate_hz=cfg.sample_rate_hz,
    )


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


def params_hash(cfg: PreprocessConfig) -> str:
    """Hash of what changes the output: params (not paths or speed knobs) and code versions."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("silero-vad", "torch", "torchaudio", "soundfile"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    payload = {
        "format_version": FORMAT_VERSION,
        "params": cfg.model_dump(mode="json", exclude=_PARAMS_NOT_HASHED),
        "versions": versions,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_temps(folder: Path) -> None:
    """Temp folders a crashed run left (`.tmp-<name>-<pid>`); a live run's are kept."""
    if not folder.is_dir():
        return
    for d in folder.glob(".tmp-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if d.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Move a finished temp folder onto `dest` (a folder rename cannot overwrite a full one)."""
    old = None
    if dest.exists():
        old = dest.parent / f".tmp-old-{dest.name}-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dest, old)
    os.rename(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _prepare_entry(path: str, expected_id: str, entry_root: str, cfg: PreprocessConfig) -> dict:
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
        entry = Path(entry_root) / f"{cid}-{params_hash(cfg)}"
        meta = read_meta(entry)
        status = "cached"
        if meta is None:
            status = "processed"
            prepared = prepare(load_audio(path), cfg)
            tmp = Path(entry_root) / f".tmp-{entry.name}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            meta = save_prepared(prepared, tmp, extra={"id": cid})
            _replace_dir(tmp, entry)
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
    tmp = dest.parent / f".tmp-{dest.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in names:
        _link_or_copy(entry / name, tmp / name)
    _replace_dir(tmp, dest)


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


def _prepare_all(items: list[tuple[str, str]], entry_root: Path, cfg: PreprocessConfig):
    """Yield one result per (id, path), in order of completion (a process pool if workers > 1)."""
    if cfg.workers <= 1 or len(items) <= 1:
        for cid, path in items:
            yield _prepare_entry(path, cid, str(entry_root), cfg)
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
        futures = [
            pool.submit(_prepare_entry, path, cid, str(entry_root), cfg) for cid, path in items
        ]
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
        cache_dir: cache root (default `config.cache_root()`).

    Returns:
        Summary: n_files, processed, cached, failed, audio_s, wall_s, out_dir, failures (list of
        {id, path, code, message}).
    """
    t0 = time.perf_counter()
    accepted = Path(accepted or cfg.accepted)
    out_dir = Path(out_dir or cfg.out_dir)
    entry_root = Path(cache_dir or cache_root()) / "preprocess"
    df = _read_accepted(accepted)
    items = sorted({str(r.id): str(r.path) for r in df[["id", "path"]].itertuples()}.items())
    entry_root.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_dead_temps(entry_root)
    _remove_dead_temps(out_dir)

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
            _prepare_all(items, entry_root, cfg),
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
