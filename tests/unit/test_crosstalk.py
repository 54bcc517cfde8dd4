"""Crosstalk: the other party leaking into a channel of a stereo call is found and silenced;
clean channels, background noise and real overtalk are left alone."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from callqa.audio.crosstalk import suppress_crosstalk
from callqa.audio.io import Audio
from callqa.audio.prepare import prepare
from callqa.config import PreprocessConfig

SR = 16000
DELAY_S = 0.025


def _say(path, seconds: float) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32")
    assert sr == SR
    return np.resize(x, int(seconds * SR)) * np.float32(0.5)


@pytest.fixture(scope="module")
def turns(realdata):
    """Two real voices taking turns (agent 0-7 s, customer 8-15 s, agent again 16-21 s),
    with 2 s of overtalk at 18-20 s: (agent, customer, agent-only, customer-only, both)."""
    asr = realdata / "asr"
    n = 22 * SR
    agent, customer = np.zeros(n, np.float32), np.zeros(n, np.float32)
    agent[: 7 * SR] = _say(asr / "librivox_ss01_0870.wav", 7)
    customer[8 * SR : 15 * SR] = _say(asr / "ps_cards_003.wav", 7)
    agent[16 * SR : 21 * SR] = _say(asr / "librivox_ss01_0880.wav", 5)
    customer[18 * SR : 20 * SR] = _say(asr / "ps_goforward.wav", 2)
    t = np.arange(n) / SR
    agent_only = (t < 7) | ((t >= 16) & (t < 18)) | ((t >= 20) & (t < 21))
    customer_only = (t >= 8) & (t < 15)
    both = (t >= 18) & (t < 20)
    return agent, customer, agent_only, customer_only, both


def _leaky(agent: np.ndarray, customer: np.ndarray, db: float):
    """Each channel also carries the other, `db` down and DELAY_S late."""
    g, d = np.float32(10 ** (db / 20)), int(DELAY_S * SR)
    a, c = agent.copy(), customer.copy()
    a[d:] += g * customer[:-d]
    c[d:] += g * agent[:-d]
    return a, c


def _energy(x: np.ndarray) -> float:
    return float(np.sum(np.square(x, dtype=np.float64)))


@pytest.mark.parametrize("db", [-40.0, -30.0, -20.0])
def test_a_leak_is_found_and_silenced_and_the_own_voice_kept(turns, db):
    agent, customer, agent_only, customer_only, both = turns
    a, c = _leaky(agent, customer, db)
    out, found = suppress_crosstalk({"agent": a, "customer": c}, SR)
    assert set(found) == {"agent", "customer"}
    for coupling in found.values():  # measured against the other's peak level nearby
        assert db - 12 <= coupling <= db + 3
    # The leak is gone where only the other party speaks (what is left sits within 0.1 s of
    # the channel's own words, kept with their onsets and tails) ...
    assert _energy(out["customer"][agent_only]) < 0.05 * _energy(c[agent_only])
    assert _energy(out["agent"][customer_only]) < 0.05 * _energy(a[customer_only])
    # ... the own voice stays, overtalk included.
    assert _energy(out["agent"][agent_only]) > 0.99 * _energy(a[agent_only])
    assert _energy(out["customer"][customer_only]) > 0.99 * _energy(c[customer_only])
    assert _energy(out["customer"][both]) > 0.95 * _energy(c[both])
    assert _energy(out["agent"][both]) > 0.95 * _energy(a[both])


def test_clean_channels_and_background_noise_are_left_alone(turns):
    agent, customer, *_ = turns
    rng = np.random.default_rng(0)
    clean = {"agent": agent, "customer": customer}
    out, found = suppress_crosstalk(clean, SR)
    assert found == {} and all(out[k] is clean[k] for k in clean)
    noisy = {k: v + rng.normal(0, 0.003, v.size).astype(np.float32) for k, v in clean.items()}
    out, found = suppress_crosstalk(noisy, SR)
    assert found == {} and all(out[k] is noisy[k] for k in noisy)


def test_prepare_keeps_the_leak_out_of_the_vad(turns):
    """Through `prepare`: with the setting off, Silero hears the -30 dB leak as speech on the
    customer channel during the agent's turns; with it on (the default), it does not."""
    agent, customer, *_ = turns
    a, c = _leaky(agent, customer, -30.0)
    audio = Audio(np.stack([a, c]), SR, "FLOAT")

    def customer_speech_in_agent_turn(cfg: PreprocessConfig) -> float:
        speech = prepare(audio, cfg, with_logmel=False).speech["customer"]
        return sum(max(0.0, min(e, 7.0) - max(s, 0.0)) for s, e in speech)

    assert customer_speech_in_agent_turn(PreprocessConfig(crosstalk=False)) > 3.0
    assert customer_speech_in_agent_turn(PreprocessConfig()) == 0.0
