"""Call metrics from VAD activity and word timestamps (definitions pinned in CONTRACTS.md).

Synth labels and scorecard checks use these same functions, so a label and a check can only
disagree where the audio or the ASR does.
"""

from __future__ import annotations

Interval = tuple[float, float]
Activity = dict[str, list[Interval]]  # role -> sorted speech intervals (seconds)


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
