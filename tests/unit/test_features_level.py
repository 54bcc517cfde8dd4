"""A recording's gain is no emotion cue: the model's voice features do not move with it.

Before `FeatureSpec.level_lufs`, a LibriSpeech reading scored "angry" at 0.99 as recorded and
"sad" 10 dB quieter. Real voices from ../shared/realdata, a stereo call made in memory.
"""

import numpy as np
import pytest

from callqa.audio.io import Audio, load_audio, resample, to_mono
from callqa.audio.prepare import prepare
from callqa.config import PreprocessConfig
from callqa.model.features import FeatureExtractor, FeatureSpec

SR = 16000
# (role, start s, end s, words); the last is under the 0.4 s loudness needs: it takes its track's
SPANS = [("agent", 0.2, 3.0, 8), ("customer", 0.4, 2.4, 5), ("agent", 3.0, 3.3, 1)]


def _voice(realdata, name: str) -> np.ndarray:
    audio = load_audio(realdata / "asr" / name)
    return resample(to_mono(audio.samples), audio.sample_rate_hz, SR)[: 4 * SR]


@pytest.fixture(scope="module")
def voices(realdata) -> np.ndarray:
    agent, customer = (
        _voice(realdata, "librivox_ss01_0870.wav"),
        _voice(realdata, "ps_cards_002.wav"),
    )
    both = np.zeros((2, 4 * SR), np.float32)
    both[0, : agent.size], both[1, : customer.size] = agent, customer
    return both / np.abs(both).max() * 0.9


def _features(extractor: FeatureExtractor, voices: np.ndarray, gains_db: tuple[float, float]):
    scaled = voices * (10 ** (np.asarray(gains_db, np.float32) / 20))[:, None]
    prep = prepare(Audio(scaled, SR), PreprocessConfig(crosstalk=False), with_logmel=True)
    return extractor.call_features(prep, SPANS)


@pytest.mark.parametrize("level_lufs", [-23.0, None])
def test_a_quieter_recording_gives_the_same_features(voices, level_lufs):
    extractor = FeatureExtractor(FeatureSpec(level_lufs=level_lufs), "cpu")
    as_recorded = _features(extractor, voices, (0.0, 0.0))
    quieter = _features(extractor, voices, (-6.0, -12.0))  # each channel its own gain
    moved = {name: _moved(as_recorded[name], quieter[name]) for name in ("audio", "prosody", "mel")}
    if level_lufs is None:  # as recorded, both move (the cue the model had learned)
        assert moved["audio"] > 0.02 and moved["prosody"] > 0.05, moved
    else:  # only the 16-bit rounding of the quieter copy is left
        assert moved["audio"] < 0.01 and moved["prosody"] < 0.01, moved
    assert moved["mel"] < 0.02, moved  # the image comes from loudness-normalised audio anyway


def _moved(before: np.ndarray, after: np.ndarray) -> float:
    """Mean absolute change relative to the mean magnitude."""
    return float(np.abs(after - before).mean() / np.abs(before).mean())


@pytest.mark.parametrize("clip_speech", [False, True])
def test_clips_are_levelled_one_by_one(voices, clip_speech):
    extractor = FeatureExtractor(FeatureSpec(clip_speech=clip_speech), "cpu")
    config = PreprocessConfig()
    loud = [prepare(Audio(v[None], SR), config) for v in voices]
    quiet = [
        prepare(Audio(v[None] * g, SR), config) for v, g in zip(voices, (0.1, 0.5), strict=True)
    ]
    a, b = extractor.clip_features(loud), extractor.clip_features(quiet)
    # Whole clips: only rounding is left. Cut to their speech (the default), the voice
    # detector's bounds move by a frame or two with the level (it hears quiet onsets later):
    # 1.6% on the 20 dB quieter clip here, against 3-22% with no levelling at all.
    limit = 0.03 if clip_speech else 0.01
    for name in ("audio", "prosody"):
        assert _moved(a[name], b[name]) < limit, name


def test_models_saved_before_keep_the_level_as_recorded():
    saved_before = {k: v for k, v in FeatureSpec().as_dict().items() if k != "level_lufs"}
    assert FeatureSpec.from_dict(saved_before).level_lufs is None
    assert FeatureSpec().level_lufs == -23.0
