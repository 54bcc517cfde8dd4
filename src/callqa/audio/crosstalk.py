"""Crosstalk on two-channel calls: each channel also carries the other party, quieter.

Real stereo call recordings often leak: the agent's channel holds the customer at -20 to
-40 dB (acoustic or hybrid echo, a shared headset bus), and the other way round. Silero hears
that leak as speech, so without this step a -30 dB leak turned 0.4 s of overtalk into 49 s,
and the ASR wrote the agent's words into the customer's transcript.

`suppress_crosstalk` finds the leak and silences it. Per 20 ms frame, the level of one
channel is compared with the other's (its maximum over +-`DELAY_S`, so a delayed echo still
lines up). While the other party speaks loudly, a leaking channel holds a (delayed, filtered)
copy of it: the median of (own - other) level over those frames is the leak's coupling, and
the normalised cross-correlation of the two signals over the frames at that level, at lags up
to `DELAY_S`, tells a leak (a clear peak) from background noise (none). Where one is found, the
frames not clearly louder than the leak would be (`MARGIN_DB` above it) are silenced (Silero
still hears speech 60 dB down); real overtalk, the channel's own voice over the other's, is
kept. A channel without a leak is returned unchanged (the same array).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.ndimage import maximum_filter1d

from callqa.audio.signal_stats import CHUNK, frame_power

logger = logging.getLogger(__name__)

FRAME_S = 0.02
DELAY_S = 0.12  # echo delay tolerated between the two channels
LOUD_DB = 12.0  # "the other party speaks loudly": within this of its 95th percentile level
QUIET_BELOW_DB = 12.0  # frames this far under the other voice are where a leak is measured
FIT_DB = 6.0  # frames within this of the median leak level measure the correlation
MIN_LOUD_FRAMES = 50  # 1 s of loud speech on the other channel before anything is decided
MIN_CORRELATION = 0.3  # cross-correlation peak over those stretches that makes a leak
MAX_CORRELATE_FRAMES = 150  # 3 s of such frames are enough (and bound the cost)
MIN_COUPLING_DB = -60.0  # a leak quieter than this is left alone ...
MAX_COUPLING_DB = -15.0  # ... and so is one this loud: levels no longer tell it from overtalk
MARGIN_DB = 10.0  # a frame this much above the leak's expected level is the channel's own voice
KEEP_AROUND_S = 0.1  # own-voice frames keep this much around them (word onsets and tails)


def frame_levels_db(x: np.ndarray, frame: int) -> np.ndarray:
    """Mean power per frame, in dB (silence floors at -120)."""
    return 10.0 * np.log10(frame_power(x, frame) + 1e-12)


def leak(
    own: np.ndarray, other: np.ndarray, own_db: np.ndarray, other_db: np.ndarray, frame: int
) -> tuple[float, float] | None:
    """(coupling dB, correlation) of a leak of `other` into `own`, or None when there is none.

    `own_db`, `other_db` are frame levels, the latter max-filtered over the delay.
    """
    loud = other_db >= np.percentile(other_db, 95) - LOUD_DB
    # Where the other party is loud and this channel is well below it: a leak, if anything.
    # Its own voice is left out (it would swamp the correlation of a quiet leak).
    quiet = loud & (own_db < other_db - QUIET_BELOW_DB)
    if quiet.sum() < MIN_LOUD_FRAMES:
        return None
    coupling = float(np.median(own_db[quiet] - other_db[quiet]))
    if not MIN_COUPLING_DB <= coupling <= MAX_COUPLING_DB:
        return None
    # Frames no louder than that level: a quiet own word (a leak 40 dB down has little energy
    # against it) would otherwise decide the correlation.
    fit = quiet & (own_db <= other_db + coupling + FIT_DB)
    if fit.sum() < MIN_LOUD_FRAMES:
        return None
    frames = np.flatnonzero(fit)[:MAX_CORRELATE_FRAMES]
    lag = int(DELAY_S * frame / FRAME_S)
    # Each frame of this channel against the other's samples around it (+-lag), summed over
    # the frames: the cross-correlation over those frames alone, at every lag, by FFT.
    starts = frames * frame
    a = own[starts[:, None] + np.arange(frame)].astype(np.float64)
    idx = starts[:, None] - lag + np.arange(frame + 2 * lag)
    inside = (idx >= 0) & (idx < len(other))
    b = np.where(inside, other[np.clip(idx, 0, len(other) - 1)], 0.0).astype(np.float64)
    n = 1 << int(math.ceil(math.log2(frame + 2 * lag + frame)))
    spectrum = np.sum(np.conj(np.fft.rfft(a, n)) * np.fft.rfft(b, n), axis=0)
    xc = np.fft.irfft(spectrum, n)[: 2 * lag + 1]
    under = b[:, lag : lag + frame]  # the other channel at zero lag
    norm = math.sqrt(float(np.sum(a * a)) * float(np.sum(under * under)))
    if norm <= 0.0:  # digital silence under the other voice
        return None
    corr = float(np.max(np.abs(xc))) / norm
    if corr < MIN_CORRELATION:
        return None
    return coupling, corr


def suppress_crosstalk(
    tracks: dict[str, np.ndarray], sample_rate_hz: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Two role tracks -> the same with the other party's leak silenced, and the leak's
    coupling in dB per track that had one. Any other number of tracks is returned as is."""
    frame = int(FRAME_S * sample_rate_hz)
    if len(tracks) != 2 or min(len(x) for x in tracks.values()) < MIN_LOUD_FRAMES * frame:
        return tracks, {}
    names = list(tracks)
    levels = {n: frame_levels_db(tracks[n], frame) for n in names}
    reach = 2 * int(DELAY_S / FRAME_S) + 1
    out, found = dict(tracks), {}
    for own, other in (names, names[::-1]):
        own_db, x = levels[own], tracks[own]
        other_db = maximum_filter1d(levels[other], reach, mode="nearest")
        measured = leak(x, tracks[other], own_db, other_db, frame)
        if measured is None:
            continue
        coupling, corr = measured
        voice = own_db > other_db + coupling + MARGIN_DB
        voice = maximum_filter1d(voice.astype(np.uint8), 2 * int(KEEP_AROUND_S / FRAME_S) + 1) > 0
        # Leak frames become silence: attenuated by 40 dB they still read as speech to Silero.
        gain = voice.astype(np.float32)
        # Sample-level gain: frame values joined by linear ramps (no clicks at the edges).
        centres = (np.arange(gain.size) + 0.5) * frame
        out[own] = np.empty_like(x)
        for i in range(0, len(x), CHUNK):  # piece by piece: an hour holds 58M samples
            per_sample = np.interp(np.arange(i, min(i + CHUNK, len(x))), centres, gain)
            out[own][i : i + CHUNK] = x[i : i + CHUNK] * per_sample.astype(np.float32)
        found[own] = round(coupling, 1)
        logger.info(
            "%s channel carries the %s at %.1f dB (correlation %.2f): %.0f%% of it silenced",
            own, other, coupling, corr, 100.0 * float(np.mean(~voice)),
        )  # fmt: skip
    return out, found
