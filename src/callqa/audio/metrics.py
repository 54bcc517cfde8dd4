"""Call metrics from VAD activity and word timestamps (definitions pinned in CONTRACTS.md).

Synth labels and scorecard checks use these same functions, so a label and a check can only
disagree where the audio or the ASR does. `call_metrics` assembles the `metrics` block of a QA
result, with the signal measurements of `callqa.audio.signal_stats`. Undefined values are None,
never NaN or infinity.
"""

from __future__ import annotations

import math

import numpy as np

from callqa.audio.signal_stats import finite_or_none, loudness_lufs, pitch_stats
from callqa.schemas import SAMPLE_RATE_HZ

Interval = tuple[float, float]
Activity = dict[str, list[Interval]]  # role -> sorted speech intervals (seconds)
# A metric's unit is the last part of its key (`speech_rate_wpm`, `snr_db`); reports and check
# details print it as written here.
METRIC_UNITS = {
    "s": "s",
    "wpm": "wpm",
    "hz": "Hz",
    "db": "dB",
    "dbfs": "dBFS",
    "lufs": "LUFS",
    "pct": "%",
}


def metric_unit(key: str) -> tuple[str, str]:
    """(key without its unit suffix, printed unit) of a metric key; ("key", "") without one.

    >>> metric_unit("snr_db"), metric_unit("talk_ratio")
    (('snr', 'dB'), ('talk_ratio', ''))
    """
    stem, _, suffix = key.rpartition("_")
    unit = METRIC_UNITS.get(suffix, "") if stem else ""
    return (stem, unit) if unit else (key, "")


def merge_intervals(intervals: list[Interval], gap_s: float = 0.0) -> list[Interval]:
    """Union of intervals; ones closer than `gap_s` are joined."""
    out: list[list[float]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1] + gap_s:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(a, b) for a, b in out]


def total_s(intervals: list[Interval]) -> float:
    return float(sum(e - s for s, e in intervals))


def mutual_silence(activity: Activity) -> list[Interval]:
    """Gaps between the call's first and last speech where no role is active.

    >>> mutual_silence({"agent": [(0, 1), (8, 9)], "customer": [(2, 3)]})
    [(1, 2), (3, 8)]
    """
    union = merge_intervals([iv for ivs in activity.values() for iv in ivs])
    return [(a[1], b[0]) for a, b in zip(union, union[1:], strict=False) if b[0] > a[1]]


def overtalk(activity: Activity) -> list[dict]:
    """Intervals where two roles are active, attributed to the role that started later.

    >>> overtalk({"agent": [(2, 5)], "customer": [(0, 3)]})
    [{'start': 2, 'end': 3, 'by': 'agent', 'over': 'customer'}]
    """
    roles = sorted(activity)
    events = []
    for i, r1 in enumerate(roles):
        for r2 in roles[i + 1 :]:
            for s1, e1 in activity[r1]:
                for s2, e2 in activity[r2]:
                    start, end = max(s1, s2), min(e1, e2)
                    if end > start:
                        by, over = (r2, r1) if s2 > s1 else (r1, r2)
                        events.append({"start": start, "end": end, "by": by, "over": over})
    return sorted(events, key=lambda ev: ev["start"])


def speech_rate_wpm(n_words: int, intervals: list[Interval]) -> float | None:
    """60 x words / total duration of the role's VAD speech; None when there is no speech."""
    speech_s = total_s(intervals)
    return 60.0 * n_words / speech_s if speech_s > 0 else None


# ---------------------------------------------------------------------------------------------
# Call metrics: activity + words + input stats + role audio -> the `metrics` block of a result
# ---------------------------------------------------------------------------------------------

ROLES = ("agent", "customer")
INPUT_STAT_KEYS = ("loudness_lufs", "clipped_share", "snr_db")


def response_latencies(activity: Activity, role: str) -> list[float]:
    """Gaps between the other party's last speech and each turn `role` starts after it.

    A turn counts only when `role` was silent since the other party stopped (not a pause in its
    own turn) and the other party is silent when it starts (interruptions are overtalk instead).

    >>> response_latencies({"agent": [(0, 2), (5, 6)], "customer": [(3, 4)]}, "customer")
    [1.0]
    """
    own = merge_intervals(list(activity.get(role, [])))
    others = merge_intervals([iv for r, ivs in activity.items() if r != role for iv in ivs])
    out = []
    prev_own_end = -math.inf
    for start, end in own:
        active = any(s < start < e for s, e in others)
        ends_before = [e for s, e in others if e <= start]
        if not active and ends_before and max(ends_before) >= prev_own_end:
            out.append(float(start - max(ends_before)))
        prev_own_end = end
    return out


def _word_count(words) -> int:
    n = 0
    for w in words or []:
        text = w.get("word", "") if isinstance(w, dict) else getattr(w, "word", "")
        n += bool(str(text).strip())
    return n


def call_metrics(
    speech: Activity,
    words: dict[str, list] | None,
    duration_s: float,
    input_stats_by_role: dict[str, dict] | None,
    tracks: dict[str, np.ndarray] | None,
    mono: bool,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
) -> dict:
    """All call metrics: `{"call": {...}, "agent": {...}, "customer": {...}}`.

    Args:
        speech: role -> VAD speech intervals (stereo: the role's channel; mono: diarized turns).
        words: role -> ASR words (`Word` or dicts with "word"); None = no transcript, so word
            counts and speech rates are None.
        duration_s: length of the call.
        input_stats_by_role: role -> stats of the decoded audio (`Prepared.input_stats`). On
            mono input the "mono" entry serves both roles.
        tracks: role -> role audio at `sample_rate_hz` (no normalisation), or {"mono": x}; used
            for pitch (and, on mono, per-role loudness over that role's turns). None = skip.
        mono: roles come from diarization: overtalk is not evaluated (None; list empty).
        sample_rate_hz: rate of `tracks`.

    Returns:
        Nested dict of floats/ints/lists; undefined values are None, never NaN or infinity.
        Times are seconds rounded to 3 decimals. `talk_ratio` is the role's share of the two
        roles' talk time. `call.overtalk_evaluated` is False on mono input.
    """
    activity = {r: merge_intervals(list(speech.get(r, []))) for r in ROLES}
    union = merge_intervals([iv for ivs in activity.values() for iv in ivs])
    gaps = mutual_silence(activity)
    events = [] if mono else overtalk(activity)
    talk_by_role = {r: total_s(activity[r]) for r in ROLES}
    talk_sum = sum(talk_by_role.values())

    call = {
        "duration_s": finite_or_none(duration_s),
        "talk_s": finite_or_none(total_s(union)),
        "mutual_silence": [
            {
                "start": finite_or_none(s),
                "end": finite_or_none(e),
                "duration_s": finite_or_none(e - s),
            }
            for s, e in gaps
        ],
        "mutual_silence_s": finite_or_none(total_s(gaps)),
        "longest_mutual_silence_s": finite_or_none(max((e - s for s, e in gaps), default=0.0)),
        "overtalk_evaluated": not mono,
        "overtalk": [
            {
                "start": finite_or_none(ev["start"]),
                "end": finite_or_none(ev["end"]),
                "duration_s": finite_or_none(ev["end"] - ev["start"]),
                "by": ev["by"],
                "over": ev["over"],
            }
            for ev in events
        ],
        "overtalk_s": None
        if mono
        else finite_or_none(total_s(merge_intervals([(ev["start"], ev["end"]) for ev in events]))),
    }
    out = {"call": call}
    for role in ROLES:
        ivs = activity[role]
        n_words = None if words is None else _word_count(words.get(role))
        rate = None if n_words is None else speech_rate_wpm(n_words, ivs)
        mine = [ev["end"] - ev["start"] for ev in events if ev["by"] == role]
        lat = response_latencies(activity, role)
        m = {
            "talk_s": finite_or_none(talk_by_role[role]),
            "talk_ratio": finite_or_none(talk_by_role[role] / talk_sum) if talk_sum > 0 else None,
            "n_words": n_words,
            "speech_rate_wpm": finite_or_none(rate, 1),
            "overtalk_s": None if mono else finite_or_none(sum(mine)),
            "longest_overtalk_s": None if mono else finite_or_none(max(mine, default=0.0)),
            "n_responses": len(lat),
            "response_latency_mean_s": finite_or_none(np.mean(lat)) if lat else None,
            "response_latency_max_s": finite_or_none(max(lat)) if lat else None,
        }
        m.update(_role_input_stats(role, ivs, input_stats_by_role, tracks, mono, sample_rate_hz))
        track = _role_track(role, tracks)
        if track is not None:
            m.update(pitch_stats(track, sample_rate_hz, ivs))
        else:
            m.update(
                dict.fromkeys(("pitch_mean_hz", "pitch_std_hz", "pitch_min_hz", "pitch_max_hz"))
            )
        out[role] = m
    return out


def _role_track(role: str, tracks: dict[str, np.ndarray] | None) -> np.ndarray | None:
    if not tracks:
        return None
    return tracks.get(role, tracks.get("mono"))


def _role_input_stats(role, ivs, stats_by_role, tracks, mono, sample_rate_hz) -> dict:
    stats = (stats_by_role or {}).get(role)
    if stats is None and stats_by_role:
        stats = stats_by_role.get("mono")
    stats = stats or {}
    out = {
        k: finite_or_none(stats.get(k), 4 if k == "clipped_share" else 2) for k in INPUT_STAT_KEYS
    }
    if mono and tracks and role not in (stats_by_role or {}):
        # One mixed channel: the file's loudness is not this speaker's; measure the role's turns.
        track = _role_track(role, tracks)
        if track is not None and ivs:
            parts = [track[int(s * sample_rate_hz) : int(e * sample_rate_hz)] for s, e in ivs]
            out["loudness_lufs"] = finite_or_none(
                loudness_lufs(np.concatenate(parts), sample_rate_hz), 2
            )
        else:
            out["loudness_lufs"] = None
    return out
