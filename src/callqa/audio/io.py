"""Audio files -> float32 arrays (channels, samples), and arrays -> files: decode, probe,
resample, write.

soundfile does the decoding (wav, flac, ogg, mp3, 8-bit and mu/A-law telephone files);
torchaudio 2.9 cannot load files without TorchCodec, so it only gets tensors.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callqa.files import atomic_path

_LOWPASS_WIDTH, _ROLLOFF = 6, 0.99  # torchaudio.functional.resample defaults

AUDIO_EXTENSIONS = {".wav", ".wave", ".flac", ".ogg", ".mp3", ".oga", ".opus"}
# Every extension a folder scan picks up: also other libsndfile containers, and containers
# soundfile cannot decode (m4a, aac, wma, amr), so those end with an error that says so
# instead of vanishing without a word.
SCAN_EXTENSIONS = AUDIO_EXTENSIONS | {
    ".aif", ".aiff", ".au", ".snd", ".caf", ".w64", ".rf64",
    ".m4a", ".aac", ".wma", ".amr",
}  # fmt: skip


@dataclass
class FolderScan:
    """What a recursive folder scan found (paths sorted)."""

    audio: list[Path]  # files with an extension in SCAN_EXTENSIONS
    other: list[Path]  # every other file (and symlinked folders): never dropped silently
    hidden: int = 0  # names starting with "." (temp files of interrupted writes, ._* forks)


COMPANIONS = {".json", ".txt", ".rttm", ".csv", ".srt", ".vtt", ".lab", ".textgrid", ".html"}


def scan_folder(folder: str | Path) -> FolderScan:
    """Walk `folder` recursively (symlinked folders are not followed, but listed in `other`).

    Hidden files and folders are skipped. A sidecar, transcript or annotation (COMPANIONS) that
    shares its stem with an audio file in the same folder (`call_0001.json`, an RTTM) belongs to
    that recording and is not listed as an input of its own; any other file is (`call.dat`
    beside `call.wav` may be a recording too).
    """
    audio, other, hidden = [], [], 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        base = Path(dirpath)
        hidden += sum(d.startswith(".") for d in dirnames)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        other += [base / d for d in dirnames if (base / d).is_symlink()]
        visible = [n for n in filenames if not n.startswith(".")]
        hidden += len(filenames) - len(visible)
        stems = {Path(n).stem for n in visible if Path(n).suffix.lower() in SCAN_EXTENSIONS}
        for name in visible:
            if Path(name).suffix.lower() in SCAN_EXTENSIONS:
                audio.append(base / name)
            elif Path(name).stem not in stems or Path(name).suffix.lower() not in COMPANIONS:
                other.append(base / name)
    return FolderScan(sorted(audio), sorted(other), hidden)


class AudioError(Exception):
    """A file that cannot be used; `code` is a quarantine / error code from CONTRACTS.md."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Audio:
    samples: np.ndarray  # float32, shape (channels, n_samples), nominally in [-1, 1]
    sample_rate_hz: int
    subtype: str = ""  # soundfile subtype, e.g. PCM_16, PCM_U8, ULAW

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return self.samples.shape[1] / self.sample_rate_hz if self.sample_rate_hz else 0.0


def probe(path: str | Path) -> dict:
    """Header facts without decoding the samples (raises AudioError)."""
    import soundfile as sf

    path = Path(path)
    _check_exists(path)
    try:
        info = sf.info(str(path))
    except Exception as err:  # noqa: BLE001 - soundfile raises several types
        raise _decode_error(path, err) from None
    return {
        "sample_rate_hz": int(info.samplerate),
        "channels": int(info.channels),
        "frames": int(info.frames),
        "duration_s": float(info.frames) / info.samplerate if info.samplerate else 0.0,
        "format": info.format,
        "subtype": info.subtype,
    }


def load_audio(path: str | Path, max_duration_s: float | None = None) -> Audio:
    """Decode a file to float32 (channels, n). Raises AudioError with a quarantine code."""
    import soundfile as sf

    path = Path(path)
    _check_exists(path)
    try:
        with sf.SoundFile(str(path)) as f:
            sr, subtype = int(f.samplerate), f.subtype
            if max_duration_s is not None and f.frames > max_duration_s * sr:
                raise AudioError(
                    "too_long",
                    f"{path.name}: {f.frames / sr:.0f} s is longer than the limit of "
                    f"{max_duration_s:.0f} s",
                )
            data = read_planar(f)
    except AudioError:
        raise
    except Exception as err:  # noqa: BLE001
        raise _decode_error(path, err) from None
    if data.shape[1] == 0:
        raise AudioError("unreadable", f"{path.name}: the file decodes to no samples")
    return Audio(data, sr, subtype)


def decode_bytes(data: bytes, name: str = "upload", max_duration_s: float | None = None) -> Audio:
    """Decode in-memory audio (used by the model server). The message of a decoding error
    names the format problem only, never the bytes."""
    import io as _io

    import soundfile as sf

    if not data:
        raise AudioError("empty_file", f"{name}: the file is empty (0 bytes)")
    try:
        with sf.SoundFile(_io.BytesIO(data)) as f:
            # keep the subtype: clipping is measured against the format's quantisation step
            sr, subtype = int(f.samplerate), f.subtype
            if max_duration_s is not None and f.frames > max_duration_s * sr:
                raise AudioError(
                    "too_long",
                    f"{name}: {f.frames / sr:.0f} s is longer than the limit of "
                    f"{max_duration_s:.0f} s",
                )
            samples = read_planar(f)
    except AudioError:
        raise
    except Exception:  # noqa: BLE001
        raise AudioError(
            "not_audio", f"{name}: not a readable audio file (wav, flac, ogg or mp3)"
        ) from None
    if samples.shape[1] == 0:
        raise AudioError("unreadable", f"{name}: the file decodes to no samples")
    return Audio(samples, sr, subtype)


def read_all(f, block_frames: int = 1 << 18) -> np.ndarray:
    """Every frame of an open `soundfile.SoundFile` as float32 (n, channels).

    libsndfile reports some codecs as not seekable (GSM 6.10 in WAV, a common telephone
    format) and then refuses a read of "all frames": read those block by block to the end.
    """
    if f.seekable():
        return f.read(dtype="float32", always_2d=True)
    blocks = []
    while True:
        block = f.read(block_frames, dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            break
        blocks.append(block)
    return np.concatenate(blocks) if blocks else np.zeros((0, f.channels), np.float32)


def read_planar(f, block_frames: int = 1 << 18) -> np.ndarray:
    """Every frame of an open `soundfile.SoundFile` as contiguous float32 (channels, n).

    A multichannel file is read block by block into its place: reading it whole gives
    (n, channels), and its transpose would be a second copy of the call.
    """
    if f.channels == 1 or not f.seekable():
        return np.ascontiguousarray(read_all(f, block_frames).T)
    out = np.empty((f.channels, f.frames), np.float32)
    done = 0
    while done < f.frames:
        block = f.read(min(block_frames, f.frames - done), dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            break
        out[:, done : done + block.shape[0]] = block.T
        done += block.shape[0]
    return out if done == f.frames else np.ascontiguousarray(out[:, :done])


def _check_exists(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioError("missing_file", f"{path}: file not found") from None
    except OSError as err:
        raise unreadable_error(path, err) from None
    if not stat.S_ISDIR(st.st_mode) and (err := not_regular_error(path, st)) is not None:
        raise err  # a folder gets its own message from the decoder
    size = st.st_size
    if size == 0:
        raise AudioError("empty_file", f"{path.name}: the file is empty (0 bytes)")


def not_regular_error(path: Path, st: os.stat_result) -> AudioError | None:
    """`unreadable` for a pipe, device or socket (reading one may never end), else None."""
    if stat.S_ISREG(st.st_mode):
        return None
    return AudioError("unreadable", f"{path.name}: not a regular file (a pipe, device or socket)")


def unreadable_error(path: Path, err: OSError) -> AudioError:
    """The file exists but this process may not read it (permissions, I/O error, a folder)."""
    if isinstance(err, FileNotFoundError):
        return AudioError("missing_file", f"{path}: file not found (it vanished while running)")
    why = err.strerror or type(err).__name__
    hint = "; check its permissions" if isinstance(err, PermissionError) else ""
    return AudioError("unreadable", f"{Path(path).name}: cannot be opened ({why}){hint}")


# Containers libsndfile cannot decode, by their magic bytes: (kind, offset, bytes).
UNDECODABLE = [
    ("MP4/M4A", 4, b"ftyp"),
    ("AMR", 0, b"#!AMR"),
    ("WMA/ASF", 0, bytes.fromhex("3026b2758e66cf11")),
    ("AAC (ADTS)", 0, b"\xff\xf1"),
    ("AAC (ADTS)", 0, b"\xff\xf9"),
    ("WebM/Matroska", 0, bytes.fromhex("1a45dfa3")),
]


def _decode_error(path: Path, err: Exception) -> AudioError:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as os_err:
        return unreadable_error(path, os_err)
    for kind, offset, magic in UNDECODABLE:
        if head[offset : offset + len(magic)] == magic:
            return AudioError(
                "unreadable",
                f"{path.name}: {kind} audio cannot be decoded here; convert it to WAV or "
                "FLAC (e.g. `ffmpeg -i in.m4a -ar 16000 out.wav`)",
            )
    known = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"ID3", b"FORM", b"\xff\xfb", b"\xff\xf3")
    if any(head.startswith(m) for m in known):
        return AudioError(
            "unreadable",
            f"{path.name}: looks like audio but cannot be decoded (truncated or corrupt: {err})",
        )
    return AudioError("not_audio", f"{path.name}: not an audio file (no known audio header)")


def to_mono(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=0) if samples.ndim == 2 else samples


def resample(x: np.ndarray, from_hz: int, to_hz: int, chunk: int = 1 << 20) -> np.ndarray:
    """Band-limited resampling (torchaudio sinc) of (..., n) float32 arrays.

    A signal longer than 2 x `chunk` samples goes through `torchaudio.functional.resample` in
    pieces of `chunk` to 2 x `chunk` samples, each with the neighbouring samples its filter
    reaches: torchaudio's conv1d unfolds its whole input into (frames, filter taps), 3-6 GB for
    a 2-hour call. The result is the whole-array one bit for bit (conv1d takes another code
    path, a last float32 bit apart, only on inputs under ~30 000 samples: keep `chunk` large).
    """
    if from_hz == to_hz:
        return x.astype(np.float32, copy=False)
    import torch
    import torchaudio.functional as AF

    g = math.gcd(int(from_hz), int(to_hz))
    up, down = to_hz // g, from_hz // g  # `up` output samples per `down` input samples
    n = x.shape[-1]
    step = max(1, chunk // down) * down
    starts = list(range(0, max(1, n - step + 1), step))  # the last piece takes the remainder
    if len(starts) == 1:
        y = AF.resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), from_hz, to_hz)
        return y.numpy()
    # torchaudio pads `width` zeros each side and its filter reaches that far (its formula)
    width = math.ceil(_LOWPASS_WIDTH * down / (min(up, down) * _ROLLOFF))
    margin = (width // down + 2) * down
    out = np.empty((*x.shape[:-1], -(-up * n // down)), np.float32)
    for a, b in zip(starts, [*starts[1:], n], strict=True):
        s, e = max(0, a - margin), min(n, b + margin)  # s, like a, a multiple of `down`
        piece = torch.from_numpy(np.ascontiguousarray(x[..., s:e], dtype=np.float32))
        y = AF.resample(piece, from_hz, to_hz).numpy()
        lo, hi = a * up // down, min(out.shape[-1], -(-b * up // down))
        out[..., lo:hi] = y[..., lo - s * up // down : hi - s * up // down]
    return out


def write_audio(
    path: str | Path, samples: np.ndarray, sample_rate_hz: int, subtype: str = "PCM_16"
):
    """Write (channels, n) or (n,) float audio atomically (temp name, then rename)."""
    import soundfile as sf

    path = Path(path)
    data = samples.T if samples.ndim == 2 else samples
    fmt = {".flac": "FLAC", ".wav": "WAV", ".ogg": "OGG"}.get(path.suffix.lower(), "WAV")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, sample_rate_hz, subtype=subtype, format=fmt)
