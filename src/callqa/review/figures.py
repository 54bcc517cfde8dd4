"""A stored call's audio -> per-role tracks and the report's waveform figures, drawn once.

Drawing a figure takes about a second, so the call page links `/figure/<role>.png` and this
module keeps each PNG in `review.figure_cache_dir`, named by row id, role and audio hash (a
re-scored call with new audio gets a new file; nothing a client sends reaches the name).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path

import numpy as np

from callqa.files import atomic_path
from callqa.qa.report import role_figures
from callqa.schemas import SAMPLE_RATE_HZ, QAResult

logger = logging.getLogger(__name__)

ROLES = ("agent", "customer")


def role_tracks(
    audio_path: Path, result: QAResult, channel_roles: tuple[str, str] = ROLES
) -> dict[str, np.ndarray]:
    """role -> mono 16 kHz audio: the role's channel when roles came from channels, else the
    mono mix kept only inside that role's transcript segments (the diarized turns)."""
    from callqa.audio.io import load_audio, resample

    audio = load_audio(audio_path)
    x = resample(audio.samples, audio.sample_rate_hz, SAMPLE_RATE_HZ)
    if result.roles_from == "channels" and x.shape[0] >= 2:
        return {role: x[i] for i, role in enumerate(channel_roles[:2])}
    mono = x.mean(axis=0)
    tracks = {}
    for role in ROLES:
        mask = np.zeros(mono.shape[0], dtype=bool)
        for seg in result.segments:
            if seg.role == role:
                lo, hi = int(seg.start * SAMPLE_RATE_HZ), int(seg.end * SAMPLE_RATE_HZ)
                mask[max(lo, 0) : max(hi, 0)] = True
        tracks[role] = np.where(mask, mono, 0.0).astype(np.float32)
    return tracks


def figure_png(
    cache_dir: Path,
    scored_call_id: int,
    role: str,
    audio_path: Path,
    result: QAResult,
    channel_roles: tuple[str, str] = ROLES,
) -> bytes | None:
    """The PNG of one role's figure (drawn and cached on first use); None without that role."""
    if role not in ROLES:
        return None
    key = hashlib.sha256(f"{audio_path}:{audio_path.stat().st_mtime_ns}".encode()).hexdigest()
    path = Path(cache_dir) / f"{int(scored_call_id)}-{role}-{key[:16]}.png"
    if path.is_file():
        return path.read_bytes()
    tracks = role_tracks(audio_path, result, channel_roles)
    duration_s = max(
        [float(result.duration_s)] + [len(t) / SAMPLE_RATE_HZ for t in tracks.values()]
    )
    pngs = role_figures(result, tracks, SAMPLE_RATE_HZ, duration_s)
    path.parent.mkdir(parents=True, exist_ok=True)
    for r, b64 in pngs.items():  # both roles at once: the page asks for both
        with atomic_path(path.with_name(f"{int(scored_call_id)}-{r}-{key[:16]}.png")) as tmp:
            tmp.write_bytes(base64.b64decode(b64))
    logger.debug("figures of scored call %d drawn", scored_call_id)
    return base64.b64decode(pngs[role]) if role in pngs else None
