"""callqa.model.audio_features: Whisper span embeddings, packing, prosody, log-mel image."""

import numpy as np
import pytest

from callqa.audio.io import load_audio, resample, to_mono
from callqa.model.audio_features import (
    PROSODY_DIM,
    PROSODY_NAMES,
    WINDOW_SAMPLES,
    _pack_windows,
    _pieces,
    embed_spans,
    encoder_states,
    load_whisper_encoder,
    mel_image,
    pack_clips,
    prosody,
    whisper_log_mel,
)

SR = 16000
DIM = 4 * 384  # tiny.en: mean + std of 2 layers of d_model 384
# three actors, three emotions (RAVDESS: modality-channel-emotion-intensity-statement-rep-actor)
CLIPS = ("03-01-05-02-01-01-01.flac", "03-01-03-01-02-02-04.flac", "03-01-04-02-01-02-07.flac")


@pytest.fixture(scope="module")
def encoder():
    return load_whisper_encoder()


@pytest.fixture(scope="module")
def speech(realdata) -> list[np.ndarray]:
    out = []
    for name in CLIPS:
        audio = load_audio(realdata / "emotion" / "ravdess" / name)
        out.append(resample(to_mono(audio.samples), audio.sample_rate_hz, SR))
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def test_encoder_is_cached_and_frozen(encoder):
    assert load_whisper_encoder() is encoder
    assert not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert (encoder.config.encoder_layers, encoder.config.d_model) == (4, 384)


def test_encoder_states_are_transformers_hidden_states(encoder):
    """At 30 s the hand-run encoder equals `WhisperEncoder.forward`; shorter windows work."""
    import torch

    features = whisper_log_mel(torch.from_numpy(_noise(30.0)[None]), 80)
    with torch.inference_mode():
        hidden = encoder(features, output_hidden_states=True).hidden_states
        ours = encoder_states(encoder, features, (0, 2, 4))
        short = encoder_states(encoder, features[:, :, :400], (2, 4))
    for k, layer in enumerate((0, 2, 4)):
        torch.testing.assert_close(ours[:, k], hidden[layer])
    assert ours.shape == (1, 3, 1500, 384) and short.shape == (1, 2, 200, 384)
    assert WINDOW_SAMPLES == 30 * SR


def test_unknown_model_says_what_to_give(tmp_path):
    with pytest.raises(ValueError, match="bundled"):
        load_whisper_encoder(str(tmp_path / "no-such-model"))


def test_shapes_and_finite_on_noise_and_silence(encoder):
    spans = [(0.0, 1.0), (0.5, 2.5), (2.0, 4.0)]
    for track in (_noise(4.0), np.zeros(4 * SR, dtype=np.float32)):
        emb = embed_spans(encoder, track, spans)
        assert emb.shape == (3, DIM) and emb.dtype == np.float32
        assert np.isfinite(emb).all()
    assert embed_spans(encoder, _noise(1.0), []).shape == (0, DIM)
    assert embed_spans(encoder, _noise(1.0), [(0, 1)], layers=(4,)).shape == (1, 2 * 384)


def test_spans_covering_no_audio_give_zeros(encoder):
    emb = embed_spans(encoder, _noise(2.0), [(1.0, 1.0), (0.2, 1.5), (5.0, 6.0), (1.5, 1.2)])
    assert not emb[[0, 2, 3]].any()
    assert np.abs(emb[1]).sum() > 0


def test_long_span_combines_its_30s_pieces(encoder):
    """A 40 s span = frame-weighted mean and pooled variance of its 30 s and 10 s pieces."""
    track = _noise(40.0, seed=1)
    whole, first, rest = embed_spans(encoder, track, [(0, 40), (0, 30), (30, 40)], layers=(4,))
    n1, n2 = 1500, 500  # encoder frames at 50 per second
    mean = (n1 * first[:384] + n2 * rest[:384]) / (n1 + n2)
    moment2 = [m[384:] ** 2 + m[:384] ** 2 for m in (first, rest)]  # E[x^2] = std^2 + mean^2
    second_moment = (n1 * moment2[0] + n2 * moment2[1]) / (n1 + n2)
    np.testing.assert_allclose(whole[:384], mean, atol=1e-4)
    np.testing.assert_allclose(whole[384:], np.sqrt(second_moment - mean**2), atol=1e-3)


def test_windows_are_shared_and_hold_their_spans():
    clips = [np.zeros(3 * SR, dtype=np.float32)] * 20
    track, spans = pack_clips(clips, gap_s=0.3)
    assert track.size == 20 * 3 * SR + 19 * int(0.3 * SR)
    assert spans[1] == pytest.approx((3.3, 6.3))
    windows = _pack_windows(_pieces(spans, track.size))
    assert len(windows) == 3  # 9 clips of 3.3 s per 30 s window, not 20 windows
    for start, members in windows:
        assert all(start <= a and b <= start + 30 * SR for _, a, b in members)
    assert sorted(i for _, members in windows for i, _, _ in members) == list(range(20))


def test_packing_keeps_real_speech_embeddings(encoder, speech):
    alone = np.stack([embed_spans(encoder, x, [(0.0, x.size / SR)])[0] for x in speech])
    track, spans = pack_clips(speech)
    packed = embed_spans(encoder, track, spans)
    cos = _cosine(alone, packed)
    # measured on the first 12 RAVDESS clips packed: min 0.92 (0.72 without subtract_silence)
    assert cos.min() >= 0.88, cos
    # the emotion is still there: each packed clip is nearest to itself alone
    sims = _cosine(packed[:, None], alone[None])
    assert (sims.argmax(axis=1) == np.arange(len(speech))).all()


def test_alone_gives_each_span_its_own_window(encoder, speech):
    """`alone`: a clip's embedding is the one it has on its own track, whatever sits beside it
    (windows still share forward passes when their lengths match)."""
    alone = np.stack([embed_spans(encoder, x, [(0.0, x.size / SR)])[0] for x in speech])
    track, spans = pack_clips(speech)
    packed_alone = embed_spans(encoder, track, spans, alone=True)
    np.testing.assert_allclose(packed_alone, alone, rtol=1e-3, atol=1e-3)
    windows = _pack_windows(_pieces(spans, track.size), alone=True)
    assert [len(members) for _, members in windows] == [1] * len(speech)


def test_prosody_of_a_tone_with_a_pause():
    t = np.arange(SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    x = np.concatenate([tone, np.zeros(SR // 2, dtype=np.float32), tone])
    p = dict(zip(PROSODY_NAMES, prosody(x, n_words=5), strict=True))
    assert np.exp(p["log_pitch_mean"]) == pytest.approx(150, rel=0.02)
    assert p["voiced_share"] > 0.7
    assert p["duration_s"] == pytest.approx(2.5)
    assert (p["words_per_s"], p["has_words"]) == (pytest.approx(2.0), 1.0)
    assert p["pause_share"] == pytest.approx(0.2, abs=0.02)
    assert p["pauses_per_s"] == pytest.approx(1 / 2.5)
    assert prosody(x)[PROSODY_NAMES.index("has_words")] == 0.0


def test_prosody_finite_on_silence_noise_and_nothing():
    for x in (np.zeros(SR, dtype=np.float32), _noise(1.0), np.zeros(0, dtype=np.float32)):
        p = prosody(x, n_words=3)
        assert p.shape == (PROSODY_DIM,) and p.dtype == np.float32
        assert np.isfinite(p).all()
    silent = dict(zip(PROSODY_NAMES, prosody(np.zeros(SR, dtype=np.float32)), strict=True))
    assert silent["voiced_share"] == 0.0 and silent["pause_share"] == 0.0


def test_mel_image_is_standardised(speech):
    image = mel_image(speech[0])
    assert image.shape == (64, 128) and image.dtype == np.float32
    assert abs(image.mean()) < 1e-4 and image.std() == pytest.approx(1.0, abs=1e-3)
    assert mel_image(speech[0], shape=(32, 64)).shape == (32, 64)
    for x in (np.zeros(SR, dtype=np.float32), np.zeros(0, dtype=np.float32), _noise(0.5)):
        assert np.isfinite(mel_image(x)).all()
