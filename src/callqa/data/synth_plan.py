"""Synth planning: per-call seeds, planned failures, the script of a call and its labels.

A plan is a pure function of (seed, failures, phrase bank, split): who says what, in which order
(the agent or the customer speaks first, drawn per call), with which voice, prosody and gaps. The
rendering side (synth_render) speaks it; `compute_labels` turns measured activity into the
sidecar's checks, and `planned_values` records what the plan asked for (CONTRACTS.md).

Each part of a line has a kind (greeting, identity, disclosure, closing, forbidden carry an
intent, `KIND_INTENT`; body, extra, hold, near_miss, ... do not) and a sentence id
(synth_splits.sentence_id). A bank with `near_misses` gets zero to two of them per call in agent
body turns, drawn from their own random stream: labels come from kinds, so they never change.
A split (synth_splits) restricts the voices; None keeps every voice and today's plans.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from callqa.config import EMOTIONS, SynthConfig
from callqa.data.phrases import DAYS, DIGITS, MONTHS, YEARS, PhraseBank
from callqa.data.synth_splits import sentence_id, voice_pool
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
# The agent's voice per call: irritated, cheerful or level, whatever the call's failures.
AGENT_EMOTIONS = ("angry", "happy", "neutral")
AGENT_EMOTION_P = (0.15, 0.25, 0.60)

# Prosody per emotion as eSpeak (rate, volume, pitch, pitch range) ranges. Agents' rate is
# calibrated separately against the measured words per minute.
PROSODY = {
    "angry": {"rate": (165, 195), "volume": (150, 175), "pitch": (50, 65), "range": (75, 95)},
    "happy": {"rate": (160, 185), "volume": (110, 130), "pitch": (62, 78), "range": (70, 90)},
    "sad": {"rate": (108, 125), "volume": (55, 75), "pitch": (20, 33), "range": (4, 18)},
    "neutral": {"rate": (140, 160), "volume": (90, 110), "pitch": (42, 55), "range": (35, 55)},
}
NOISE_KINDS = ("white", "pink", "brown", "hum", "babble")
# Part kind -> the intent it carries (the sidecar's per-turn "intents").
KIND_INTENT = {
    "greeting": "greeting",
    "identity": "identity_verification",
    "disclosure": "recording_disclosure",
    "closing": "closing",
    "forbidden": "forbidden_language",
}
MAX_NEAR_MISSES = 2
P_NEAR_MISS_OF_MISSING = 0.75  # a call lacking an intent gets that intent's near-miss


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
    sids: list[str] = field(default_factory=list)  # one sentence id per part

    @property
    def text(self) -> str:
        return " ".join(s for _, s in self.parts)

    def drop_kinds(self, kinds: set[str]) -> None:
        keep = [i for i, (k, _) in enumerate(self.parts) if k not in kinds]
        self.parts = [self.parts[i] for i in keep]
        self.sids = [self.sids[i] for i in keep] if self.sids else []


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
    split: str | None = None  # the split whose voices it used (None: every voice)


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


def plan_call(
    seed: int, failures: dict[str, bool], bank: PhraseBank, split: str | None = None
) -> CallPlan:
    """The script of one call: lines with kinds, voices, prosody and timing. Pure.

    Who speaks first is drawn per call: either the agent answers (greeting, then the customer's
    opener and problem) or the customer speaks first (opener), the agent answers, and the
    customer states the problem. `split` limits the voices to that split's (synth_splits);
    the bank passed in is already cut to it.
    """
    rng = np.random.default_rng([seed, 0])
    origin: dict[str, str] = {}  # template -> the list it came from (for sentence ids)

    def pick(seq, name: str | None = None):
        t = seq[int(rng.integers(len(seq)))]
        if name is not None and isinstance(t, str):
            origin.setdefault(t, name)
        return t

    customer = pick(bank.customer_names, "customer_names")
    names = {
        "company": pick(bank.companies, "companies"),
        "agent": pick(bank.agent_names, "agent_names"),
        "customer": customer,
        "first": customer.split()[0],
        "dob": f"{pick(DAYS)} of {pick(MONTHS)}, {pick(YEARS)}",
        "digits": _words_for(rng, 4, DIGITS),
        "code": _words_for(rng, 5, DIGITS),
    }
    emo = pick(EMOTIONS)
    # The agent's tone is drawn apart from the failures: when rude lines came in an angry voice,
    # the model learned the voice (every turn of such a call read as rude), not the words.
    agent_emo = str(rng.choice(AGENT_EMOTIONS, p=AGENT_EMOTION_P))
    topic = pick(bank.topics)
    lines: list[Line] = []

    def say(role: str, parts: list[tuple[str, str]], gap_s: float, **flags) -> None:
        sids = [sentence_id(origin.get(t, kind), t) for kind, t in parts]
        lines.append(
            Line(role, [(k, t.format(**names)) for k, t in parts], gap_s, **flags, sids=sids)
        )

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
        say(
            "customer",
            [("body", pick(bank.opener[emo], f"opener.{emo}"))],
            float(rng.uniform(0.3, 1.5)),
        )
    opening = (
        [("greeting", pick(bank.greetings, "greetings"))]
        if not failures["greeting"]
        else [("opener", pick(bank.no_greeting, "no_greeting"))]
    )
    if early_disclosure:
        opening.append(("disclosure", pick(bank.disclosures, "disclosures")))
    say("agent", opening, agent_gap() if customer_first else float(rng.uniform(0.3, 1.5)))
    problem = [("body", pick(topic.problem, "topics.problem"))]
    if not customer_first:
        problem.insert(0, ("body", pick(bank.opener[emo], f"opener.{emo}")))
    say("customer", problem, customer_gap())

    third: list[tuple[str, str]] = []
    if failures["overtalk"]:
        cut_in = pick(bank.interrupt) + "."
        origin[cut_in] = "interrupt"
        third.append(("interrupt", cut_in))
    third.append(
        ("forbidden", pick(bank.forbidden, "forbidden"))
        if forbidden_at == 0
        else ("body", pick(bank.empathy[emo], f"empathy.{emo}"))
    )
    if disclose and not early_disclosure:
        third.append(("disclosure", pick(bank.disclosures, "disclosures")))
    hold = ("hold", pick(bank.hold, "hold"))
    hold_gap = float(rng.uniform(*(DEAD_AIR_GAP_S if failures["dead_air"] else HOLD_GAP_S)))
    if failures["identity_verification"]:
        say("agent", [*third, hold], agent_gap(), interrupt=failures["overtalk"])
    else:
        request, answer = pick(bank.identity)
        origin.setdefault(request, "identity")
        origin.setdefault(answer, "identity.answer")
        say("agent", [*third, ("identity", request)], agent_gap(), interrupt=failures["overtalk"])
        say("customer", [("body", answer)], customer_gap())
        say("agent", [("extra", pick(bank.identity_ok, "identity_ok")), hold], agent_gap())
    step1, step2, step3 = topic.steps
    origin.update((t, "topics.steps") for t in topic.steps if t not in origin)
    say(
        "agent",
        [("extra", pick(bank.resume, "resume")), ("body", step1), ("extra", step2)],
        hold_gap,
    )
    say(
        "customer",
        [
            ("body", pick(bank.reaction[emo], f"reaction.{emo}")),
            ("extra", pick(topic.question, "topics.question")),
        ],
        customer_gap(),
    )
    answer_parts = [("body", pick(topic.answer, "topics.answer"))]
    if forbidden_at == 1:
        answer_parts.insert(0, ("forbidden", pick(bank.forbidden, "forbidden")))
    say("agent", answer_parts, agent_gap(), optional=forbidden_at != 1)
    if rng.random() < 0.5:
        say(
            "customer",
            [("body", pick(bank.reaction[emo], f"reaction.{emo}"))],
            customer_gap(),
            optional=True,
        )
    final_parts = [("body", step3)]
    if forbidden_at == 2:
        final_parts.insert(0, ("forbidden", pick(bank.forbidden, "forbidden")))
    say("agent", final_parts, agent_gap(), optional=forbidden_at != 2)
    say(
        "customer",
        [("body", pick(bank.thanks[emo], f"thanks.{emo}"))],
        customer_gap(),
        optional=True,
    )
    if not failures["closing"]:
        say("agent", [("closing", pick(bank.closings, "closings"))], agent_gap())
        say("customer", [("body", pick(bank.goodbye[emo], f"goodbye.{emo}"))], customer_gap())
    else:
        say("agent", [("body", pick(bank.no_closing, "no_closing"))], agent_gap())
        if rng.random() < 0.6:
            say("customer", [("body", pick(bank.trailing, "trailing"))], customer_gap())

    _add_near_misses(np.random.default_rng([seed, 3]), lines, failures, bank, names)
    voices = _pick_voices(rng, emo, agent_emo, split)
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
        split=split,
    )


def _add_near_misses(
    rng: np.random.Generator, lines: list[Line], failures: dict, bank: PhraseBank, names: dict
) -> None:
    """Insert 0-2 near-miss sentences into agent body turns (after the opening, before a closing).

    A call that lacks an intent gets that intent's near-miss with P_NEAR_MISS_OF_MISSING; the rest
    up to a uniform 0-2 are random intents. Their kind, near_miss, carries no intent.
    """
    if not bank.near_misses:
        return
    intents = sorted(bank.near_misses)
    lacking = [i for i in intents if failures.get(i) != (i == "forbidden_language")]
    chosen = [i for i in lacking if rng.random() < P_NEAR_MISS_OF_MISSING]
    chosen = [chosen[j] for j in rng.permutation(len(chosen))][:MAX_NEAR_MISSES]
    want = int(rng.integers(0, MAX_NEAR_MISSES + 1))
    while len(chosen) < want:
        chosen.append(intents[int(rng.integers(len(intents)))])
    agent = [i for i, ln in enumerate(lines) if ln.role == "agent"]
    targets = [i for i in agent[1:] if not {"greeting", "closing"} & {k for k, _ in lines[i].parts}]
    for intent in chosen:
        if not targets:
            break
        line = lines[targets[int(rng.integers(len(targets)))]]
        options = bank.near_misses[intent]
        t = options[int(rng.integers(len(options)))]
        at = int(rng.integers(1, len(line.parts) + 1))  # never first: an interrupt starts a turn
        line.parts.insert(at, ("near_miss", t.format(**names)))
        line.sids.insert(at, sentence_id(f"near_misses.{intent}", t))


def _estimate_s(lines: list[Line], voices: dict[str, Voice], agent_wpm: float) -> float:
    """Rough call length: words at each role's expected rate, sentence pauses, gaps."""
    total = 0.0
    for line in lines:
        wpm = agent_wpm if line.role == "agent" else voices["customer"].rate * NOMINAL_TO_MEASURED
        total += 60.0 * len(line.text.split()) / wpm + 0.4 * (len(line.parts) - 1)
        total += max(line.gap_s, 0.0)
    return total


_SPARE = {"extra", "near_miss"}  # sentences a long call may lose


def _fit_length(lines: list[Line], voices, agent_wpm: float, max_s: float) -> list[Line]:
    """Drop optional lines, then spare sentences (extras, near-misses), while the call would run
    over `max_s`."""
    lines = list(lines)
    while _estimate_s(lines, voices, agent_wpm) > max_s:
        drop = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].optional), None)
        if drop is not None:
            # A dropped agent answer takes the customer's question with it.
            if lines[drop].role == "agent" and drop > 0:
                lines[drop - 1].drop_kinds({"extra"})
            del lines[drop]
            continue
        extra = next((ln for ln in lines if any(k in _SPARE for k, _ in ln.parts)), None)
        if extra is None:
            break
        extra.drop_kinds(_SPARE)
    return lines


def _pick_voices(
    rng: np.random.Generator, emo: str, agent_emo: str, split: str | None = None
) -> dict[str, Voice]:
    pools = {True: voice_pool(FEMALE_VARIANTS, split), False: voice_pool(MALE_VARIANTS, split)}

    def variant(female: bool) -> str:
        pool = pools[female]
        return pool[int(rng.integers(len(pool)))]

    a_female, c_female = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    a_var = variant(a_female)
    if pools[c_female] == (a_var,):  # a split with one voice of that sex: the other sex
        c_female = not c_female
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
