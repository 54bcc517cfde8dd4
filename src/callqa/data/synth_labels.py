"""Synth labels: measured activity + timed turns -> checks and events (CONTRACTS.md definitions).

Labels come from the kinds of the sentences each agent turn carries (synth_plan), never from
near-misses, and from activity measured with the metric functions scoring uses.
"""

from __future__ import annotations

import numpy as np

from callqa.audio import metrics
from callqa.data.synth_plan import CallPlan

# Label rules: the default scorecard's windows and bounds (scorecards/default.yaml).
GREETING_WINDOW_S = (0.0, 15.0)
CLOSING_LAST_S = 30.0
DEAD_AIR_MAX_S = 5.0  # fails when a mutual silence lasts longer
OVERTALK_MAX_S = 1.0  # fails when an agent-attributed overlap lasts this long or longer
AGENT_WPM_BOUNDS = (100.0, 190.0)


def compute_labels(
    activity: dict[str, list[tuple[float, float]]],
    turns: list[dict],
    duration_s: float,
    agent_words: int,
) -> tuple[dict[str, bool], list[dict], float | None]:
    """Checks (True = compliant), violation events and the agent's words per minute.

    Phrase checks look at the agent turns that carry each kind of sentence: the greeting must
    start within the first 15 s, the closing within the last 30 s. Call hygiene uses the same
    metric functions as scoring on the given VAD activity.

    >>> act = {"agent": [(0.0, 4.0), (11.0, 14.0)], "customer": [(4.5, 5.0)]}
    >>> turns = [{"role": "agent", "start": 0.0, "kinds": ["greeting"]}]
    >>> checks, events, wpm = compute_labels(act, turns, 15.0, 14)
    >>> checks["greeting"], checks["dead_air"], checks["closing"], round(wpm)
    (True, False, False, 120)
    >>> events
    [{'type': 'dead_air', 'start': 5.0, 'end': 11.0, 'by': None}]
    """

    def said(kind: str, lo: float = -np.inf, hi: float = np.inf) -> bool:
        return any(
            t["role"] == "agent" and kind in t["kinds"] and lo <= t["start"] <= hi for t in turns
        )

    gaps = metrics.mutual_silence(activity)
    overlaps = metrics.overtalk(activity)
    wpm = metrics.speech_rate_wpm(agent_words, activity.get("agent", []))
    dead = [(s, e) for s, e in gaps if e - s > DEAD_AIR_MAX_S]
    long_overlaps = [ev for ev in overlaps if ev["end"] - ev["start"] >= OVERTALK_MAX_S]
    checks = {
        "greeting": said("greeting", *GREETING_WINDOW_S),
        "identity_verification": said("identity"),
        "recording_disclosure": said("disclosure"),
        "closing": said("closing", duration_s - CLOSING_LAST_S),
        "forbidden_language": not said("forbidden"),
        "dead_air": not dead,
        "overtalk": not any(ev["by"] == "agent" for ev in long_overlaps),
        "agent_speech_rate": wpm is not None and AGENT_WPM_BOUNDS[0] <= wpm <= AGENT_WPM_BOUNDS[1],
    }
    events = [{"type": "dead_air", "start": s, "end": e, "by": None} for s, e in dead]
    events += [
        {"type": "overtalk", "start": ev["start"], "end": ev["end"], "by": ev["by"]}
        for ev in long_overlaps
    ]
    return checks, sorted(events, key=lambda ev: ev["start"]), wpm


def planned_values(plan: CallPlan, overtalk_s: list[float]) -> dict:
    """The sidecar's `planned` values: what the script and placement aimed at, no measurement.

    `dead_air_s`: every planned silence between consecutive lines (the dead-air rule, > 5.0 s,
    applies to these); `overtalk_s`: the overlap aimed at for each agent interruption (from
    rendering, which places it); `agent_rate_wpm`: the agent's target words per minute.
    """
    gaps = [ln.gap_s for ln in plan.lines[1:] if not ln.interrupt and ln.gap_s > 0]
    return {
        "dead_air_s": [round(float(g), 3) for g in gaps],
        "overtalk_s": [round(float(o), 3) for o in overtalk_s],
        "agent_rate_wpm": round(float(plan.target_wpm), 1),
    }
