"""featurize's clip channels: each emotion clip as a phone line or an 8-bit export delivers it."""

import numpy as np

from callqa.audio.io import resample, to_mono
from callqa.model.featurize import _heard, clip_id

CLIP = "03-01-05-02-01-01-01.flac"  # RAVDESS actor01, angry


def test_each_channel_hears_the_clip_its_own_way(realdata):
    path = str(realdata / "emotion" / "ravdess" / CLIP)
    clean = _heard(path, "clean")
    x = resample(to_mono(clean.samples), clean.sample_rate_hz, 16000)
    narrow = resample(resample(x, 16000, 8000), 8000, 16000)  # 8 kHz and back, nothing else
    pcm8, phone = _heard(path, "pcm8"), _heard(path, "telephone")
    assert pcm8.sample_rate_hz == phone.sample_rate_hz == 16000
    assert pcm8.samples.shape == phone.samples.shape == (1, narrow.size)
    # pcm8: the 8 kHz clip rounded to steps of 1/128, whose noise is step / sqrt(12) RMS
    err = float(np.sqrt(np.mean((pcm8.samples[0] - narrow) ** 2)))
    assert 0.5 * (1 / 128) / np.sqrt(12) < err < 1.5 * (1 / 128) / np.sqrt(12), err
    # telephone is another channel (band filter + mu-law; tests/unit/test_synth.py checks it)
    assert not np.allclose(phone.samples, pcm8.samples, atol=1e-3)
    # each channel caches under its own id
    assert len({clip_id(path, c) for c in ("clean", "telephone", "pcm8")}) == 3


def test_clips_keep_their_corpus_label_and_out_of_scope_ones_train_only(realdata):
    """RAVDESS's 8 emotions with the default 4-label set: calm -> neutral, fearful / disgust /
    surprised kept for training with no reported label (featurize.clip_fine_labels)."""
    from callqa.config import FeaturizeConfig
    from callqa.model.featurize import emotion_clip_entries

    folder = realdata / "emotion" / "ravdess"
    on, _ = emotion_clip_entries(FeaturizeConfig(emotion_corpora=[folder]))
    off, _ = emotion_clip_entries(FeaturizeConfig(emotion_corpora=[folder], clip_fine_labels=False))
    assert len(on) == 480 and len(off) == 288  # 8 actors x 60 clips; 36 of them in the 4 labels
    pairs = {(e["fine"], e["label"]) for e in on}
    assert pairs == {("neutral", "neutral"), ("calm", "neutral"), ("happy", "happy"),
                     ("sad", "sad"), ("angry", "angry"), ("fearful", None),
                     ("disgust", None), ("surprised", None)}  # fmt: skip
    assert {e["fine"] for e in off} == {None}
    # the speaker-disjoint splits do not move when the out-of-scope clips join
    split_on = {e["speaker"]: e["split"] for e in on}
    assert split_on == {e["speaker"]: e["split"] for e in off}
