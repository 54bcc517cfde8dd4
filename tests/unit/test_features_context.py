"""Speaker context of the model's audio features: each row's deviation from its speaker's mean."""

import numpy as np

from callqa.model.features import FeatureExtractor, FeatureSpec, speaker_relative
from callqa.model.featurize import speaker_group


def _arrays(n: int = 5) -> dict:
    rng = np.random.default_rng(0)
    return {
        "audio": rng.normal(size=(n, 6)).astype(np.float32),
        "prosody": rng.normal(size=(n, 3)).astype(np.float32),
        "mel": rng.normal(size=(n, 4, 4)).astype(np.float32),
    }


def test_each_row_gains_its_deviation_from_its_speakers_mean():
    a = _arrays()
    out = speaker_relative(a, ["x", "y", "x", "x", "y"])
    assert out["audio"].shape == (5, 12) and out["prosody"].shape == (5, 6)
    np.testing.assert_array_equal(out["audio"][:, :6], a["audio"])  # the raw part is kept
    np.testing.assert_array_equal(out["mel"], a["mel"])  # the image is left alone
    x = [0, 2, 3]
    np.testing.assert_allclose(out["audio"][x, 6:], a["audio"][x] - a["audio"][x].mean(0),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(out["prosody"][[1, 4], 3:].sum(0), 0.0, atol=1e-5)


def test_an_unknown_or_lone_speaker_deviates_by_zero():
    a = _arrays(3)
    out = speaker_relative(a, [None, None, "only"])
    np.testing.assert_array_equal(out["audio"][:, 6:], 0.0)  # two Nones are not one speaker
    assert np.abs(out["audio"][:, :6]).sum() > 0


def test_the_spec_decides_and_old_models_load_without_context():
    a = _arrays(2)
    off = FeatureExtractor(FeatureSpec(speaker_relative=False), "cpu").with_context(a, ["s", "s"])
    assert off["audio"].shape == (2, 6)
    on = FeatureExtractor(FeatureSpec(), "cpu").with_context(a, ["s", "s"])
    assert on["audio"].shape == (2, 12)
    saved_before = {k: v for k, v in FeatureSpec().as_dict().items() if k != "speaker_relative"}
    assert FeatureSpec.from_dict(saved_before).speaker_relative is False


def test_speaker_of_a_row_is_the_clip_speaker_or_the_calls_role():
    clip = {"has_audio": True, "source": "emotion_clip", "speaker": "actor03", "call_id": "c1"}
    turn = {"has_audio": True, "source": "synth", "call_id": "call7", "role": "customer"}
    text = {"has_audio": False, "source": "bank_text", "call_id": "text:1", "role": "agent"}
    assert speaker_group(clip) == "speaker:actor03"
    assert speaker_group({**clip, "speaker": None}) is None
    # the same speaker over a phone line is another voice to compare turns with
    assert speaker_group({**clip, "channel": "telephone"}) == "speaker:actor03/telephone"
    assert speaker_group({**clip, "channel": "clean"}) == "speaker:actor03"
    assert speaker_group(turn) == "call7/customer"
    assert speaker_group(text) is None
