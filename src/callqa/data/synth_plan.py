"""Synth planning: per-call seeds, planned failures, the script of a call and its labels.

A plan is a pure function of (seed, failures, phrase bank): who says what, in which order (the
agent or the customer speaks first, drawn per call), with which voice, prosody and gaps. The
rendering side (synth_render) speaks it; `compute_labels` turns measured activity into the
sidecar's checks, and `planned_values` records what the plan asked for (CONTRACTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from callqa.audio import metrics
from callqa.config import EMOTIONS, SynthConfig
from callqa.data.phrases import DAYS, DIGITS, MONTHS, YEARS, PhraseBank
from callqa.schemas import CHECK_IDS

# Failure kind -> SynthConfig probability field.
FAILURE_P = {
    "greeting": "p_missing_greeting",
    "identity_verification": "p_missing_identity",
    "recording_disclosure": "p_missing_disclosure",
    "closing": "p_missing_closing",
    "forbidden_language": "p_forbidden",
    "dead_air": "p_dead_air",
    "overtalk": "p_overtalk",
    "agent_speech_rate": "p_fast_agent",
}
# Label rules: the default scorecard's windows and bounds (scorecards/default.yaml).
GREETING_WINDOW_S = (0.0, 15.0)
CLOSING_LAST_S = 30.0
DEAD_AIR_MAX_S = 5.0  # fails when a mutual silence lasts longer
OVERTALK_MAX_S = 1.0  # fails when an agent-attributed overlap lasts this long or longer
AGENT_WPM_BOUNDS = (100.0, 190.0)
# Rendering targets, kept clear of those thresholds (CONTRACTS.md).
NORMAL_WPM = (128.0, 158.0)  # target band; accepted as measured within 122-163
FAST_WPM = (228.0, 262.0)  # accepted as measured from 220
MAX_CALL_S = 75.0  # estimated length above which optional lines are dropped
DEAD_AIR_GAP_S = (6.5, 9.0)
HOLD_GAP_S = (1.0, 3.0)
OVERTALK_S = (1.6, 3.0)
CUSTOMER_OVERLAP_S = (0.05, 0.3)
BLOCK = 20  # failure kinds are stratified over blocks of 20 consecutive calls
NOMINAL_TO_MEASURED = 1.24  # eSpeak rate 150 measures ~186 wpm over VAD speech

# Voices: eSpeak language + variant (voices/!v). Variants kept where Whisper tiny.en transcribed
# a test sentence with <= 10% WER; customers also get harder accents.
AGENT_LANGS = ("en-us", "en", "en-gb-x-rp")
CUSTOMER_LANGS = ("en-us", "en", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-scotland")
FEMALE_VARIANTS = ("f2", "f3", "f4", "Annie", "belinda", "steph", "steph2")
MALE_VARIANTS = ("", "m1", "m4", "m5", "m8", "Alex", "Andy", "john", "max", "michel", "robert")
# Prosody per emotion as eSpeak (rate, volume, pitch, pitch range) ranges. Agents' rate is
# calibrated separately against the measured words per minute.
PROSODY = {
    "angry": {"rate": (165, 195), "volume": (150, 175), "pitch": (50, 65), "range": (75, 95)},
    "happy": {"rate": (160, 185), "volume": (110, 130), "pitch": (62, 78), "range": (70, 90)},
    "sad": {"rate": (108, 125), "volume": (55, 75), "pitch": (20, 33), "range": (4, 18)},
    "neutral": {"rate": (140, 160), "volume": (90, 110), "pitch": (42, 55), "range": (35, 55)},
}
NOISE_KINDS = ("white", "pink", "brown", "hum", "babble")


# ---------------------------------------------------------------------------------------------
# Script: seed + planned failures -> who says what, with which voice and timing
# ---------------------------------------------------------------------------------------------


@dataclass
class Voice:
    name: str
    rate: float
    volume: float
    pitch: float
    pitch_range: float


@dataclass
class Line:
    role: str
    parts: list[tuple[str, str]]  # (kind, sentence); kind: greeting, disclosure, identity, ...
    gap_s: float  # silence before the line (negative: starts that much before the last end)
    interrupt: bool = False  # agent starts inside the previous customer line
    optional: bool = False  # may be dropped to keep the call short

    @property
    def text(self) -> str:
        return " ".join(s for _, s in self.parts)


@dataclass
class CallPlan:
    seed: int
    failures: dict[str, bool]  # planned violations
    emotion: dict[str, str]
    voices: dict[str, Voice]
    target_wpm: float
    lines: list[Line]
    tail_s: float
    noise_kind: str
    gains_db: dict[str, float] = field(default_factory=dict)


def call_seeds(seed: int, n: int) -> list[int]:
    """Per-call seeds from `SeedSequence(seed).spawn(n)`: call i's seed ignores n and workers."""
    return [int(c.generate_state(1, np.uint32)[0]) for c in np.random.SeedSequence(seed).spawn(n)]


def failure_plan(cfg: SynthConfig, n: int) -> list[dict[str, bool]]:
    """Planned violations per call, stratified so each kind hits about p of every 20 calls.

    Independent coin flips would leave, say, 7 of 40 calls (18%) with a failure meant for 30%;
    here each block of 20 consecutive calls holds round(20 p) of each kind (stochastic rounding),
    at positions drawn per block. Call i's plan depends on (seed, i), not on n.
    """
    plans = [dict.fromkeys(CHECK_IDS, False) for _ in range(n)]
    for k, check in enumerate(CHECK_IDS):
        p = float(getattr(cfg, FAILURE_P[check]))
        for b in range((n + BLOCK - 1) // BLOCK):
            rng = np.random.default_rng([cfg.seed & 0xFFFFFFFF, 7919, k, b])
            count = int(np.floor(p * BLOCK + rng.random()))
            for pos in rng.permutation(BLOCK)[:count]:
                i = b * BLOCK + int(pos)
                if i < n:
                    plans[i][check] = True
    return plans


def _words_for(rng: np.random.Generator, n: int, options) -> str:
    return " ".join(options[int(rng.integers(len(options)))] for _ in range(n))


def plan_call(seed: int, failures: dict[str, bool], bank: PhraseBank) -> CallPlan:
    """The script of one call: lines with kinds, voices, prosody and timing. Pure.

    Who speaks first is drawn per call: either the agent answers (greeting, then the customer's
    opener and problem) or the customer speaks first (opener), the agent answers, and the
    customer states the problem.
    """
    rng = np.random.default_rng([seed, 0])

    def pick(seq):
        return seq[int(rng.integers(len(seq)))]

    customer = pick(bank.customer_names)
    names = {
        "company": pick(bank.companies),
        "agent": pick(bank.agent_names),
        "customer": customer,
        "first": customer.split()[0],
        "dob": f"{pick(DAYS)} of {pick(MONTHS)}, {pick(YEARS)}",
        "digits": _words_for(rng, 4, DIGITS),
        "code": _words_for(rng, 5, DIGITS),
    }
    emo = pick(EMOTIONS)
    agent_emo = (
        "angry"
        if failures["forbidden_language"] and rng.random() < 0.5
        else ("happy" if rng.random() < 0.3 else "neutral")
    )
    topic = pick(bank.topics)
    lines: list[Line] = []

    def say(role: str, parts: list[tuple[str, str]], gap_s: float, **flags) -> None:
        lines.append(Line(role, [(k, t.format(**names)) for k, t in parts], gap_s, **flags))

    def agent_gap() -> float:
        return float(rng.uniform(0.3, 1.2))

    def customer_gap() -> float:
        # A quarter of customer turns start just before the agent finishes (customer overtalk,
        # well under the agent threshold): real turn-taking, and a test of attribution.
        if rng.random() < 0.25:
            return -float(rng.uniform(*CUSTOMER_OVERLAP_S))
        return float(rng.uniform(0.2, 1.0))

    # Where the forbidden sentence goes (if any) and where the disclosure sits.
    forbidden_at = int(rng.integers(3)) if failures["forbidden_language"] else -1
    disclose = not failures["recording_disclosure"]
    early_disclosure = disclose and rng.random() < 0.5

    customer_first = bool(rng.random() < 0.5)
    if customer_first:
        say("customer", [("body", pick(bank.opener[emo]))], float(rng.uniform(0.3, 1.5)))
    opening = (
        [("greeting", pick(bank.greetings))]
        if not failures["greeting"]
        else [("opener", pick(bank.no_greeting))]
    )
    if early_disclosure:
        opening.append(("disclosure", pick(bank.disclosures)))
    say("agent", opening, agent_gap() if customer_first else float(rng.uniform(0.3, 1.5)))
    problem = [("body", pick(topic.problem))]
    if not customer_first:
        problem.insert(0, ("body", pick(bank.opener[emo])))
    say("customer", problem, customer_gap())

    third: list[tuple[str, str]] = []
    if failures["overtalk"]:
        third.append(("interrupt", pick(bank.interrupt) + "."))
    third.append(
        ("forbidden", pick(bank.forbidden))
        if forbidden_at == 0
        else ("body", pick(bank.empathy[emo]))
    )
    if disclose and not early_disclosure:
        third.append(("disclosure", pick(bank.disclosures)))
    hold = ("hold", pick(bank.hold))
    hold_gap = float(rng.uniform(*(DEAD_AIR_GAP_S if failures["dead_air"] else HOLD_GAP_S)))
    if failures["identity_verification"]:
        say("agent", [*third, hold], agent_gap(), interrupt=failures["overtalk"])
    else:
        request, answer = pick(bank.identity)
        say("agent", [*third, ("identity", request)], agent_gap(), interrupt=failures["overtalk"])
        say("customer", [("body", answer)], customer_gap())
        say("agent", [("extra", pick(bank.identity_ok)), hold], agent_gap())
    step1, step2, step3 = topic.steps
    say("agent", [("extra", pick(bank.resume)), ("body", step1), ("extra", step2)], hold_gap)
    say(
        "customer",
        [("body", pick(bank.reaction[emo])), ("extra", pick(topic.question))],
        customer_gap(),
    )
    answer_parts = [("body", pick(topic.answer))]
    if forbidden_at == 1:
        answer_parts.insert(0, ("forbidden", pick(bank.forbidden)))
    say("agent", answer_parts, agent_gap(), optional=forbidden_at != 1)
    if rng.random() < 0.5:
        say("customer", [("body", pick(bank.reaction[emo]))], customer_gap(), optional=True)
    final_parts = [("body", step3)]
    if forbidden_at == 2:
        final_parts.insert(0, ("forbidden", pick(bank.forbidden)))
    say("agent", final_parts, agent_gap(), optional=forbidden_at != 2)
    say("customer", [("body", pick(bank.thanks[emo]))], customer_gap(), optional=True)
    if not failures["closing"]:
        say("agent", [("closing", pick(bank.closings))], agent_gap())
        say("customer", [("body", pick(bank.goodbye[emo]))], customer_gap())
    else:
        say("agent", [("body", pick(bank.no_closing))], agent_gap())
        if rng.random() < 0.6:
            say("customer", [("body", pick(bank.trailing))], customer_gap())

    voices = _pick_voices(rng, emo, agent_emo)
    fast = failures["agent_speech_rate"]
    target = float(rng.uniform(*(FAST_WPM if fast else NORMAL_WPM)))
    voices["agent"].rate = target / NOMINAL_TO_MEASURED
    lines = _fit_length(lines, voices, target, MAX_CALL_S)
    out_rng = np.random.default_rng([seed, 2])
    return CallPlan(
        seed=seed,
        failures=dict(failures),
        emotion={"agent": agent_emo, "customer": emo},
        voices=voices,
        target_wpm=target,
        lines=lines,
        tail_s=float(rng.uniform(0.3, 1.2)),
        noise_kind=NOISE_KINDS[int(out_rng.integers(len(NOISE_KINDS)))],
        gains_db={r: float(out_rng.uniform(-9, -3)) for r in ("agent", "customer")},
    )


def _estimate_s(lines: list[Line], voices: dict[str, Voice], agent_wpm: float) -> float:
    """Rough call length: words at each role's expected rate, sentence pauses, gaps."""
    total = 0.0
    for line in lines:
        wpm = agent_wpm if line.role == "agent" else voices["customer"].rate * NOMINAL_TO_MEASURED
        total += 60.0 * len(line.text.split()) / wpm + 0.4 * (len(line.parts) - 1)
        total += max(line.gap_s, 0.0)
    return total


def _fit_length(lines: list[Line], voices, agent_wpm: float, max_s: float) -> list[Line]:
    """Drop optional lines, then optional sentences, while the call would run over `max_s`."""
    lines = list(lines)
    while _estimate_s(lines, voices, agent_wpm) > max_s:
        drop = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].optional), None)
        if drop is not None:
            # A dropped agent answer takes the customer's question with it.
            if lines[drop].role == "agent" and drop > 0:
                prev = lines[drop - 1]
                prev.parts = [p for p in prev.parts if p[0] != "extra"]
            del lines[drop]
            continue
        extra = next((ln for ln in lines if any(k == "extra" for k, _ in ln.parts)), None)
        if extra is None:
            break
        extra.parts = [p for p in extra.parts if p[0] != "extra"]
    return lines


def _pick_voices(rng: np.random.Generator, emo: str, agent_emo: str) -> dict[str, Voice]:
    def variant(female: bool) -> str:
        pool = FEMALE_VARIANTS if female else MALE_VARIANTS
        return pool[int(rng.integers(len(pool)))]

    a_female, c_female = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    a_var = variant(a_female)
    c_var = variant(c_female)
    while c_var == a_var:
        c_var = variant(c_female)
    a_lang = AGENT_LANGS[int(rng.integers(len(AGENT_LANGS)))]
    c_lang = CUSTOMER_LANGS[int(rng.integers(len(CUSTOMER_LANGS)))]

    def voice(lang: str, var: str, emotion: str) -> Voice:
        p = PROSODY[emotion]
        return Voice(
            name=f"{lang}+{var}" if var else lang,
            rate=float(rng.uniform(*p["rate"])),
            volume=float(rng.uniform(*p["volume"])),
            pitch=float(rng.uniform(*p["pitch"])),
            pitch_range=float(rng.uniform(*p["range"])),
        )

    return {"agent": voice(a_lang, a_var, agent_emo), "customer": voice(c_lang, c_var, emo)}


# ---------------------------------------------------------------------------------------------
# Labels: measured activity + timed turns -> checks and events (CONTRACTS.md definitions)
# ---------------------------------------------------------------------------------------------


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
