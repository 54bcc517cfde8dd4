"""`callqa synth`: labelled synthetic two-party calls rendered with eSpeak NG.

SynthConfig -> `<out>/call_00000.wav` (agent left, customer right; or a mono mix; or 8 kHz mu-law)
plus `call_00000.json` ground truth (CONTRACTS.md "Synth sidecar"). Labels are measured on the
rendered audio with the same VAD and metric functions that scoring uses, never read off the script
settings.

    >>> run(SynthConfig(n_calls=4), Path("/tmp/calls"), progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import io
import json
import logging
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from callqa.audio import metrics
from callqa.config import SynthConfig, VadConfig
from callqa.data.phrases import EMOTIONS, PhraseBank, get_bank
from callqa.schemas import CHECK_IDS, SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

TELEPHONE_RATE_HZ = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
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
_CALL_RE = re.compile(r"^call_(\d{5,})\.(wav|json)$")


# ---------------------------------------------------------------------------------------------
# eSpeak NG through ctypes
# ---------------------------------------------------------------------------------------------


class Espeak:
    """libespeak-ng from `espeakng-loader`, one utterance at a time, at 22050 Hz.

    eSpeak keeps state between utterances (pitch flutter phase, gain control) and seeds its
    breath-noise generator from the clock, so the same text comes out different from call to
    call. The library is therefore unloaded and loaded again before every utterance (well under
    1 ms) and its generator seeded, which makes each utterance a pure function of its text and
    settings, whatever the worker or the order.
    """

    _CALLBACK = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    def __init__(self) -> None:
        import espeakng_loader

        self.lib_path = str(espeakng_loader.get_library_path())
        self.data_path = Path(espeakng_loader.get_data_path())
        self._chunks: list[np.ndarray] = []
        # Keep the callback object alive as long as the engine: the C side holds a raw pointer.
        self._callback = self._CALLBACK(self._collect)
        self._lib = None
        self._libc = ctypes.CDLL(None)
        self.sample_rate_hz = self._load()
        variants = {p.name for p in (self.data_path / "voices" / "!v").iterdir()}
        missing = sorted(set(FEMALE_VARIANTS + MALE_VARIANTS) - variants - {""})
        if missing:
            raise RuntimeError(
                f"eSpeak data at {self.data_path} lacks voice variants {missing}; "
                "reinstall espeakng-loader (pip install --force-reinstall espeakng-loader)"
            )

    def _collect(self, wav, n, _events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def _load(self) -> int:
        if self._lib is not None:
            import _ctypes

            self._lib.espeak_Terminate()
            _ctypes.dlclose(self._lib._handle)
        lib = ctypes.CDLL(self.lib_path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        # AUDIO_OUTPUT_SYNCHRONOUS = 2: samples arrive through the callback, no audio device.
        rate = lib.espeak_Initialize(2, 0, str(self.data_path).encode(), 0)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({rate}) with data at {self.data_path}")
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        return rate

    def synth(
        self, text: str, voice: str, rate: int, volume: int, pitch: int, pitch_range: int, seed: int
    ) -> np.ndarray:
        """float32 samples at `sample_rate_hz` with leading/trailing silence trimmed."""
        self._load()
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"eSpeak has no voice {voice!r} in {self.data_path}")
        # espeakRATE=1, espeakVOLUME=2, espeakPITCH=3, espeakRANGE=4 (absolute values).
        for param, value in ((1, rate), (2, volume), (3, pitch), (4, pitch_range)):
            lib.espeak_SetParameter(param, int(value), 0)
        # Breathy variants draw noise from eSpeak's own generator, which Initialize seeds from
        # the clock (and older builds from libc rand()): seed both per utterance.
        if hasattr(lib, "espeak_ng_SetRandSeed"):  # espeak-ng >= 1.52
            lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        self._libc.srand(seed & 0x7FFFFFFF)
        self._chunks.clear()
        data = text.encode("utf-8")
        lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 1, None, None)  # 1 = espeakCHARS_UTF8
        lib.espeak_Synchronize()
        x = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return trim_silence(x.astype(np.float32) / 32768.0, self.sample_rate_hz)


_ENGINE: Espeak | None = None


def _engine() -> Espeak:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Espeak()
    return _ENGINE


def trim_silence(x: np.ndarray, sample_rate_hz: int, threshold: float = 0.003) -> np.ndarray:
    """Drop leading/trailing samples quieter than `threshold`, keeping 5 ms either side."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    if loud.size == 0:
        return x[:0]
    pad = int(0.005 * sample_rate_hz)
    return x[max(0, loud[0] - pad) : loud[-1] + pad + 1]


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
    """The script of one call: lines with kinds, voices, prosody and timing. Pure."""
    from callqa.data.phrases import DAYS, DIGITS, MONTHS, YEARS

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

    opening = (
        [("greeting", pick(bank.greetings))]
        if not failures["greeting"]
        else [("opener", pick(bank.no_greeting))]
    )
    if early_disclosure:
        opening.append(("disclosure", pick(bank.disclosures)))
    say("agent", opening, float(rng.uniform(0.3, 1.5)))
    problem = [("body", pick(bank.opener[emo])), ("body", pick(topic.problem))]
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
# Rendering: plan -> clean 16 kHz role tracks, timed turns
# ---------------------------------------------------------------------------------------------


@dataclass
class Rendered:
    plan: CallPlan
    tracks: dict[str, np.ndarray]  # role -> clean float32 track at 16 kHz, equal lengths
    turns: list[dict]  # role, start, end, text, kinds
    utterances: list[np.ndarray]


def _pad(x: np.ndarray, pad_s: float = 0.5) -> np.ndarray:
    z = np.zeros(int(pad_s * SAMPLE_RATE_HZ), np.float32)
    return np.concatenate([z, x, z])


def _vad(x: np.ndarray, vad_cfg: VadConfig) -> list[tuple[float, float]]:
    from callqa.audio.vad import detect_speech

    return detect_speech(x, SAMPLE_RATE_HZ, vad_cfg)


def render_call(plan: CallPlan, vad_cfg: VadConfig | None = None) -> Rendered:
    """Speak every line, calibrate the agent's rate on measured speech, place lines in time."""
    from callqa.audio.io import resample

    vad_cfg = vad_cfg or VadConfig()
    engine = _engine()
    jit_rng = np.random.default_rng([plan.seed, 1])
    jitter = [
        (
            float(jit_rng.uniform(0.96, 1.04)),  # rate factor
            float(jit_rng.uniform(-5, 5)),  # volume
            float(jit_rng.uniform(-3, 3)),  # pitch
            int(jit_rng.integers(1, 2**31 - 1)),  # eSpeak noise seed
        )
        for _ in plan.lines
    ]

    def speak(i: int, rate: float) -> np.ndarray:
        line, v = plan.lines[i], plan.voices[plan.lines[i].role]
        r, dv, dp, seed = jitter[i]
        x = engine.synth(
            line.text,
            v.name,
            rate=int(np.clip(round(rate * r), 80, 450)),
            volume=int(np.clip(round(v.volume + dv), 0, 200)),
            pitch=int(np.clip(round(v.pitch + dp), 0, 99)),
            pitch_range=int(np.clip(round(v.pitch_range), 0, 99)),
            seed=seed,
        )
        return resample(x, engine.sample_rate_hz, SAMPLE_RATE_HZ)

    audio: dict[int, np.ndarray] = {}
    for i, line in enumerate(plan.lines):
        if line.role == "customer":
            audio[i] = speak(i, plan.voices["customer"].rate)
    audio.update(_calibrated_agent(plan, speak, vad_cfg))
    starts = _place(plan, audio, vad_cfg)

    end_s = max(starts[i] + len(audio[i]) / SAMPLE_RATE_HZ for i in audio) + plan.tail_s
    n = int(np.ceil(end_s * SAMPLE_RATE_HZ))
    tracks = {r: np.zeros(n, np.float32) for r in ("agent", "customer")}
    turns = []
    for i, line in enumerate(plan.lines):
        s = int(round(starts[i] * SAMPLE_RATE_HZ))
        tracks[line.role][s : s + len(audio[i])] += audio[i]
        turns.append(
            {
                "role": line.role,
                "start": s / SAMPLE_RATE_HZ,
                "end": (s + len(audio[i])) / SAMPLE_RATE_HZ,
                "text": line.text,
                "kinds": sorted({k for k, _ in line.parts}),
            }
        )
    return Rendered(plan, tracks, turns, [audio[i] for i in range(len(plan.lines))])


def _calibrated_agent(plan: CallPlan, speak, vad_cfg: VadConfig) -> dict[int, np.ndarray]:
    """Agent lines at a rate whose measured words per minute lands in the planned band.

    eSpeak's rate is nominal (150 measures ~186 wpm over VAD speech, and it varies by voice),
    so render, measure with the label's own definition, rescale and render again.
    """
    idx = [i for i, line in enumerate(plan.lines) if line.role == "agent"]
    words = sum(len(plan.lines[i].text.split()) for i in idx)
    fast = plan.failures["agent_speech_rate"]
    lo, hi = (220.0, 330.0) if fast else (122.0, 163.0)
    rate = plan.voices["agent"].rate
    for _ in range(4):
        out = {i: speak(i, rate) for i in idx}
        speech_s = sum(metrics.total_s(_vad(_pad(out[i]), vad_cfg)) for i in idx)
        wpm = 60.0 * words / speech_s if speech_s > 0 else 0.0
        if lo <= wpm <= hi or wpm == 0.0:
            break
        logger.debug("call %s: agent at rate %.0f measured %.0f wpm, retry", plan.seed, rate, wpm)
        rate *= plan.target_wpm / wpm
    return out


def _place(plan: CallPlan, audio: dict[int, np.ndarray], vad_cfg: VadConfig) -> dict[int, float]:
    """Start time of every line: gaps, customer overlaps, the agent's interruption."""
    rng = np.random.default_rng([plan.seed, 3])
    starts: dict[int, float] = {}
    last_end = 0.0
    agent_end = 0.0
    for i, line in enumerate(plan.lines):
        dur = len(audio[i]) / SAMPLE_RATE_HZ
        if i == 0:
            start = line.gap_s
        elif line.interrupt and plan.lines[i - 1].role == "customer":
            start = _interrupt_start(starts[i - 1], audio[i - 1], audio[i], rng, vad_cfg)
            start = max(start, agent_end + 0.2)
        else:
            start = max(last_end + line.gap_s, 0.0)
        starts[i] = start
        last_end = max(last_end, start + dur)
        if line.role == "agent":
            agent_end = start + dur
    return starts


def _interrupt_start(
    cust_start: float, cust: np.ndarray, agent: np.ndarray, rng, vad_cfg: VadConfig
) -> float:
    """Agent start that overlaps the customer's last (or longest) speech run by 1.6-3.0 s.

    Overtalk is attributed per VAD segment to whoever started later, so the agent starts inside
    one customer segment and one of its own long segments (an opening "Right," may be a short
    segment of its own at slow rates) covers the overlap without a pause.
    """
    pad = 0.5
    c_segs = [(s - pad, e - pad) for s, e in _vad(_pad(cust, pad), vad_cfg)]
    a_segs = [(s - pad, e - pad) for s, e in _vad(_pad(agent, pad), vad_cfg)]
    if not c_segs or not a_segs:
        return cust_start
    c0, c1 = (
        c_segs[-1]
        if c_segs[-1][1] - c_segs[-1][0] >= 1.9
        else max(c_segs, key=lambda s: s[1] - s[0])
    )
    a0, a1 = next((s for s in a_segs if s[1] - s[0] >= 1.9), max(a_segs, key=lambda s: s[1] - s[0]))
    a0 = max(a0, 0.0)
    # Overlap o: the agent starts at c1 - a0 - o, at least 0.3 s after the customer segment.
    most = min(OVERTALK_S[1], c1 - c0 - 0.3 - a0, a1 - a0 - 0.1)
    overlap = float(rng.uniform(OVERTALK_S[0], most)) if most > OVERTALK_S[0] else max(most, 0.0)
    return cust_start + c1 - a0 - overlap


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


# ---------------------------------------------------------------------------------------------
# Output: clean tracks -> stereo / mono / telephone file with optional background noise
# ---------------------------------------------------------------------------------------------


def make_noise(kind: str, n: int, rng: np.random.Generator, speech: list[np.ndarray]) -> np.ndarray:
    """Unit-power background noise at 16 kHz: white, pink, brown, mains hum or babble."""
    if kind in ("white", "pink", "brown"):
        x = rng.standard_normal(n)
        if kind != "white":
            spec = np.fft.rfft(x)
            f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE_HZ), 20.0)
            spec /= np.sqrt(f) if kind == "pink" else f
            x = np.fft.irfft(spec, n)
    elif kind == "hum":
        t = np.arange(n) / SAMPLE_RATE_HZ
        f0 = 50.0 if rng.random() < 0.5 else 60.0
        x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 7))
        x = x + 0.05 * rng.standard_normal(n)
    elif kind == "babble":
        # Several streams of reversed speech: speech-like spectrum and rhythm, no words.
        x = np.zeros(n)
        pieces = [u[::-1] for u in speech if len(u)]
        for _ in range(6):
            pos = -int(rng.integers(0, SAMPLE_RATE_HZ * 2))
            while pos < n and pieces:
                u = pieces[int(rng.integers(len(pieces)))]
                a, b = max(pos, 0), min(pos + len(u), n)
                if b > a:
                    x[a:b] += u[a - pos : b - pos]
                pos += len(u) + int(rng.integers(0, SAMPLE_RATE_HZ // 4))
    else:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")
    power = float(np.mean(x**2)) if n else 0.0
    return (x / np.sqrt(power) if power > 0 else x).astype(np.float32)


def _speech_power(x: np.ndarray, intervals: list[tuple[float, float]]) -> float:
    parts = [x[int(s * SAMPLE_RATE_HZ) : int(e * SAMPLE_RATE_HZ)] for s, e in intervals]
    parts = [p for p in parts if p.size]
    return float(np.mean(np.concatenate(parts) ** 2)) if parts else float(np.mean(x**2))


def telephone_band(x: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """300-3400 Hz band with 100/300 Hz raised-cosine edges (FFT mask, zero phase)."""
    n = x.shape[-1]
    f = np.fft.rfftfreq(n, 1 / sample_rate_hz)
    lo, hi = TELEPHONE_BAND_HZ
    gain = np.ones_like(f)
    gain[f < lo - 100] = 0.0
    edge = (f >= lo - 100) & (f < lo)
    gain[edge] = 0.5 - 0.5 * np.cos(np.pi * (f[edge] - (lo - 100)) / 100)
    gain[f > hi + 300] = 0.0
    edge = (f > hi) & (f <= hi + 300)
    gain[edge] = 0.5 + 0.5 * np.cos(np.pi * (f[edge] - hi) / 300)
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * gain, n, axis=-1).astype(np.float32)


def mix_output(rendered: Rendered, activity: dict, cfg: SynthConfig) -> tuple[np.ndarray, int, str]:
    """The file's samples (channels, n), sample rate and soundfile subtype."""
    plan = rendered.plan
    g = {r: 10 ** (plan.gains_db[r] / 20) for r in ("agent", "customer")}
    agent = rendered.tracks["agent"] * g["agent"]
    customer = rendered.tracks["customer"] * g["customer"]
    if cfg.channels == "mono":
        chans = [agent + customer]
        speech = [metrics.merge_intervals(activity["agent"] + activity["customer"])]
    else:
        chans = [agent, customer]
        speech = [activity["agent"], activity["customer"]]
    if cfg.telephone:
        chans = [telephone_band(x, SAMPLE_RATE_HZ) for x in chans]
    if cfg.snr_db is not None:
        # Noise is scaled against the speech in the file's own band, so the file has the SNR
        # asked for (a 50 Hz hum would otherwise vanish in the telephone band).
        rng = np.random.default_rng([plan.seed, 4])
        for c, x in enumerate(chans):
            noise = make_noise(plan.noise_kind, x.size, rng, rendered.utterances)
            if cfg.telephone:
                noise = telephone_band(noise, SAMPLE_RATE_HZ)
            noise_power = max(float(np.mean(noise**2)), 1e-12)
            scale = np.sqrt(_speech_power(x, speech[c]) / 10 ** (cfg.snr_db / 10) / noise_power)
            chans[c] = x + scale * noise
    out = np.stack(chans).astype(np.float32)
    rate, subtype = SAMPLE_RATE_HZ, "PCM_16"
    if cfg.telephone:
        from callqa.audio.io import resample

        out = resample(out, SAMPLE_RATE_HZ, TELEPHONE_RATE_HZ)
        rate, subtype = TELEPHONE_RATE_HZ, "ULAW"
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0.95:  # keep clear of clipping (validate quarantines clipped files)
        out *= 0.95 / peak
    return out, rate, subtype


def encode_wav(samples: np.ndarray, sample_rate_hz: int, subtype: str) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples.T, sample_rate_hz, subtype=subtype, format="WAV")
    return buf.getvalue()


def synth_call(seed: int, failures: dict[str, bool], cfg: SynthConfig) -> tuple[bytes, dict]:
    """One call: (WAV bytes, sidecar dict). Deterministic in (seed, failures, cfg)."""
    from callqa.files import bytes_id

    plan = plan_call(seed, failures, get_bank(cfg.phrase_bank))
    rendered = render_call(plan)
    vad_cfg = VadConfig()
    activity = {r: metrics.merge_intervals(_vad(x, vad_cfg)) for r, x in rendered.tracks.items()}
    duration_s = rendered.tracks["agent"].size / SAMPLE_RATE_HZ
    agent_words = sum(len(t["text"].split()) for t in rendered.turns if t["role"] == "agent")
    checks, events, wpm = compute_labels(activity, rendered.turns, duration_s, agent_words)
    samples, rate, subtype = mix_output(rendered, activity, cfg)
    data = encode_wav(samples, rate, subtype)
    mismatched = [c for c in CHECK_IDS if checks[c] == failures[c]]
    if mismatched:
        logger.warning("call seed %s: planned and measured labels differ for %s", seed, mismatched)
    r3 = lambda v: round(float(v), 3)  # noqa: E731
    sidecar = {
        "call_id": bytes_id(data),
        "seed": seed,
        "sample_rate_hz": rate,
        "channels": int(samples.shape[0]),
        "channel_roles": ["agent", "customer"] if samples.shape[0] == 2 else None,
        "duration_s": r3(samples.shape[1] / rate),
        "checks": checks,
        "emotion": dict(plan.emotion),
        "agent_speech_rate_wpm": round(float(wpm), 1) if wpm is not None else None,
        "events": [{**ev, "start": r3(ev["start"]), "end": r3(ev["end"])} for ev in events],
        "turns": [
            {"role": t["role"], "start": r3(t["start"]), "end": r3(t["end"]), "text": t["text"]}
            for t in rendered.turns
        ],
    }
    return data, sidecar


# ---------------------------------------------------------------------------------------------
# Stage: files, workers, progress, summary
# ---------------------------------------------------------------------------------------------


def _write_call(out_dir: Path, index: int, data: bytes, sidecar: dict) -> None:
    from callqa.files import atomic_path

    stem = out_dir / f"call_{index:05d}"
    with atomic_path(stem.with_suffix(".wav")) as tmp:
        tmp.write_bytes(data)
    with atomic_path(stem.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")


def _synth_one(index: int, seed: int, failures: dict, cfg: SynthConfig, out_dir: Path) -> dict:
    data, sidecar = synth_call(seed, failures, cfg)
    _write_call(out_dir, index, data, sidecar)
    return {
        "index": index,
        "checks": sidecar["checks"],
        "emotion": sidecar["emotion"]["customer"],
        "duration_s": sidecar["duration_s"],
        "mismatch": sum(sidecar["checks"][c] == failures[c] for c in CHECK_IDS),
    }


def _init_worker() -> None:
    import torch

    # Each worker is one of several processes: one torch thread each avoids oversubscription.
    torch.set_num_threads(1)


def _remove_stale(out_dir: Path, n: int) -> int:
    """Delete call files from an earlier, larger run (only names this stage writes)."""
    removed = 0
    if out_dir.is_dir():
        for p in out_dir.iterdir():
            m = _CALL_RE.match(p.name)
            if m and int(m.group(1)) >= n:
                p.unlink()
                removed += 1
    return removed


def run(
    cfg: SynthConfig,
    out_dir: Path | None = None,
    n_calls: int | None = None,
    progress: bool = True,
) -> dict:
    """Render `n_calls` calls into `out_dir` (defaults from `cfg`) and summarise the labels.

    Returns:
        {"n_calls", "out_dir", "seconds", "audio_s", "mean_call_s", "violations" (check -> calls
        that fail it), "customer_emotion" (emotion -> calls), "plan_mismatches" (labels whose
        measured value differs from the plan; expected 0)}.
    """
    from callqa.progress import track

    t0 = time.perf_counter()
    out_dir = Path(out_dir if out_dir is not None else cfg.out_dir)
    n = int(n_calls if n_calls is not None else cfg.n_calls)
    if n < 1:
        raise ValueError(f"n_calls must be at least 1 (got {n}); set synth.n_calls or pass -n")
    get_bank(cfg.phrase_bank)  # fail early on an unknown bank
    out_dir.mkdir(parents=True, exist_ok=True)
    removed = _remove_stale(out_dir, n)
    if removed:
        logger.info("removed %d call files beyond call %d from %s", removed, n - 1, out_dir)
    seeds, plans = call_seeds(cfg.seed, n), failure_plan(cfg, n)
    workers = min(cfg.workers, n)
    results = []
    if workers == 1:
        jobs = (_synth_one(i, seeds[i], plans[i], cfg, out_dir) for i in range(n))
        results = list(track(jobs, "synth", enabled=progress, total=n))
    else:
        # eSpeak is one global engine per process: parallelise with processes. spawn, not fork:
        # forking after torch / onnxruntime thread pools have started can hang.
        ctx = get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures = [
                pool.submit(_synth_one, i, seeds[i], plans[i], cfg, out_dir) for i in range(n)
            ]
            done = (f.result() for f in as_completed(futures))
            results = list(track(done, "synth", enabled=progress, total=n))
    results.sort(key=lambda r: r["index"])
    audio_s = sum(r["duration_s"] for r in results)
    summary = {
        "n_calls": n,
        "out_dir": str(out_dir),
        "seconds": round(time.perf_counter() - t0, 1),
        "audio_s": round(audio_s, 1),
        "mean_call_s": round(audio_s / n, 1),
        "violations": {c: sum(not r["checks"][c] for r in results) for c in CHECK_IDS},
        "customer_emotion": {e: sum(r["emotion"] == e for r in results) for e in EMOTIONS},
        "plan_mismatches": sum(r["mismatch"] for r in results),
    }
    logger.debug(
        "synth: %d calls (%.0f s of audio) in %s in %.1f s",
        n,
        audio_s,
        out_dir,
        summary["seconds"],
    )
    return summary
