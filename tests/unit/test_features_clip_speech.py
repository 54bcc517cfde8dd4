"""A labelled clip gives the model the features a call's utterance of the same speech would.

`callqa score` cuts a call's turns to their ASR segments; featurize and `evaluate --manifest`
read whole clips. Trained on whole RAVDESS files (about a second of silence around the speech)
and scored on segments, neutral and calm clips came out "angry". With `FeatureSpec.clip_speech`
a clip is cut to its speech first. A real RAVDESS clip, more silence added around it.
"""

import numpy as np
import pytest

from callqa.audio.io import Audio, load_audio, resample, to_mono
from callqa.audio.prepare import prepare
from callqa.config import PreprocessConfig
from callqa.model.features import FeatureExtractor, FeatureSpec

SR = 16000
CLIP = "emotion/ravdess/03-01-02-01-01-01-01.flac"  # calm, actor 01


@pytest.fixture(scope="module")
def prepared(realdata):
    audio = load_audio(realdata / CLIP)
    x = resample(to_mono(audio.samples), audio.sample_rate_hz, SR)
    padded = np.concatenate([np.zeros(SR, np.float32), x, np.zeros(3 * SR // 2, np.float32)])
    return prepare(Audio(padded[None], SR), PreprocessConfig(), with_logmel=True)


def _moved(before: np.ndarray, after: np.ndarray) -> float:
    return float(np.abs(after - before).mean() / np.abs(before).mean())


@pytest.mark.parametrize("clip_speech", [True, False])
def test_a_clip_reads_as_its_speech_segment(prepared, clip_speech):
    extractor = FeatureExtractor(FeatureSpec(clip_speech=clip_speech), "cpu")
    speech = next(iter(prepared.speech.values()))
    assert speech and speech[0][0] > 1.0 and speech[-1][1] < prepared.duration_s - 1.0
    segment = ("customer", speech[0][0], speech[-1][1], None)  # as the ASR would cut it
    as_clip = extractor.clip_features([prepared])
    as_turn = extractor.call_features(prepared, [segment])
    moved = {name: _moved(as_turn[name], as_clip[name]) for name in ("audio", "mel", "prosody")}
    if clip_speech:  # the same samples: only sample rounding of the bounds is left
        assert max(moved.values()) < 0.01, moved
    else:  # the whole file: silence in the pooled embedding, the image and the pauses
        assert min(moved.values()) > 0.05, moved


def test_a_clip_without_speech_keeps_the_whole_file():
    noise = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 1e-4
    prep = prepare(Audio(noise[None], SR), PreprocessConfig(), with_logmel=True)
    assert not next(iter(prep.speech.values()))
    cut = FeatureExtractor(FeatureSpec(clip_speech=True), "cpu").clip_features([prep])
    whole = FeatureExtractor(FeatureSpec(clip_speech=False), "cpu").clip_features([prep])
    for name in ("audio", "mel", "prosody"):
        np.testing.assert_array_equal(cut[name], whole[name])


def test_models_saved_before_read_whole_clips():
    saved_before = {k: v for k, v in FeatureSpec().as_dict().items() if k != "clip_speech"}
    assert FeatureSpec.from_dict(saved_before).clip_speech is False
    assert FeatureSpec().clip_speech is True
