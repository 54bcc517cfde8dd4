"""Synth rendering: eSpeak NG speech, placement in time, mixing and the WAV file.

`render_call` speaks a CallPlan (synth_plan) into clean 16 kHz role tracks; `mix_output` makes the
file's samples (stereo, mono mix or 8 kHz telephone, optional background noise).
"""

from __future__ import annotations

import ctypes
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callqa.audio import metrics
from callqa.config import SynthConfig, VadConfig
from callqa.data.synth_plan import (
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    NOISE_KINDS,
    OVERTALK_S,
    CallPlan,
)
from callqa.schemas import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

TELEPHONE_RATE_HZ = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)


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
# Rendering: plan -> clean 16 kHz role tracks, timed turns
# ---------------------------------------------------------------------------------------------


@dataclass
class Rendered:
    plan: CallPlan
    tracks: dict[str, np.ndarray]  # role -> clean float32 track at 16 kHz, equal lengths
    turns: list[dict]  # role, start, end, text, kinds
    utterances: list[np.ndarray]
    planned_overtalk_s: list[float]  # overlap aimed at for each agent interruption


def _pad(x: np.ndarray, pad_s: float = 0.5) -> np.ndarray:
    z = np.zeros(int(pad_s * SAMPLE_RATE_HZ), np.float32)
    return np.concatenate([z, x, z])


def vad(x: np.ndarray, vad_cfg: VadConfig) -> list[tuple[float, float]]:
    from callqa.audio.vad import detect_speech

    return detect_speech(x, SAMPLE_RATE_HZ, vad_cfg)


def render_call(plan: CallPlan, vad_cfg: VadConfig) -> Rendered:
    """Speak every line, calibrate the agent's rate on measured speech, place lines in time."""
    from callqa.audio.io import resample

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
    starts, overtalk_s = _place(plan, audio, vad_cfg)

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
    utterances = [audio[i] for i in range(len(plan.lines))]
    return Rendered(plan, tracks, turns, utterances, overtalk_s)


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
        speech_s = sum(metrics.total_s(vad(_pad(out[i]), vad_cfg)) for i in idx)
        wpm = 60.0 * words / speech_s if speech_s > 0 else 0.0
        if lo <= wpm <= hi or wpm == 0.0:
            break
        logger.debug("call %s: agent at rate %.0f measured %.0f wpm, retry", plan.seed, rate, wpm)
        rate *= plan.target_wpm / wpm
    return out


def _place(
    plan: CallPlan, audio: dict[int, np.ndarray], vad_cfg: VadConfig
) -> tuple[dict[int, float], list[float]]:
    """Start time of every line (gaps, customer overlaps, the agent's interruption), and the
    overlap aimed at for each interruption."""
    rng = np.random.default_rng([plan.seed, 3])
    starts: dict[int, float] = {}
    overtalk_s: list[float] = []
    last_end = 0.0
    agent_end = 0.0
    for i, line in enumerate(plan.lines):
        dur = len(audio[i]) / SAMPLE_RATE_HZ
        if i == 0:
            start = line.gap_s
        elif line.interrupt and plan.lines[i - 1].role == "customer":
            aimed, overlap = _interrupt_start(starts[i - 1], audio[i - 1], audio[i], rng, vad_cfg)
            start = max(aimed, agent_end + 0.2)
            overtalk_s.append(max(overlap - (start - aimed), 0.0))
        else:
            start = max(last_end + line.gap_s, 0.0)
        starts[i] = start
        last_end = max(last_end, start + dur)
        if line.role == "agent":
            agent_end = start + dur
    return starts, overtalk_s


def _interrupt_start(
    cust_start: float, cust: np.ndarray, agent: np.ndarray, rng, vad_cfg: VadConfig
) -> tuple[float, float]:
    """Agent start that overlaps the customer's last (or longest) speech run by 1.6-3.0 s, and
    that overlap.

    Overtalk is attributed per VAD segment to whoever started later, so the agent starts inside
    one customer segment and one of its own long segments (an opening "Right," may be a short
    segment of its own at slow rates) covers the overlap without a pause.
    """
    pad = 0.5
    c_segs = [(s - pad, e - pad) for s, e in vad(_pad(cust, pad), vad_cfg)]
    a_segs = [(s - pad, e - pad) for s, e in vad(_pad(agent, pad), vad_cfg)]
    if not c_segs or not a_segs:
        return cust_start, min(cust.size, agent.size) / SAMPLE_RATE_HZ
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
    return cust_start + c1 - a0 - overlap, overlap


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


def telephone_channel(x: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """`x` as heard through a narrowband phone line and back: the 300-3400 Hz band, 8 kHz,
    8-bit mu-law, then resampled to `sample_rate_hz` (what a model reading 16 kHz gets)."""
    import torch
    import torchaudio.functional as AF

    from callqa.audio.io import resample

    y = resample(telephone_band(x, sample_rate_hz), sample_rate_hz, TELEPHONE_RATE_HZ)
    q = AF.mu_law_encoding(torch.from_numpy(np.clip(y, -1.0, 1.0)), 256)
    y = AF.mu_law_decoding(q, 256).numpy()
    return resample(y, TELEPHONE_RATE_HZ, sample_rate_hz)


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
