"""Sentence encoder: the bundled MiniLM-L6, mean pooling + L2 norm, per-text cache, one per name."""

from __future__ import annotations

import numpy as np
import pytest

from callqa.text.encoder import EncoderError, SentenceEncoder, get_encoder, resolve_model_path


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return get_encoder("bundled")


def test_construction_loads_nothing():
    enc = SentenceEncoder("bundled")
    assert enc._model is None and enc._tokenizer is None


def test_shape_dtype_and_unit_norm(encoder):
    texts = ["thank you for calling, how can i help", "the refund takes five days", "hi"]
    vecs = encoder.encode(texts)
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_paraphrases_are_closer_than_unrelated_sentences(encoder):
    a, b, c = encoder.encode(
        [
            "this call is being recorded for quality purposes",
            "just so you know we record our calls for training",
            "your parcel should arrive on thursday",
        ]
    )
    assert a @ b > 0.5 > a @ c


def test_cache_returns_the_same_vectors_without_reencoding(encoder):
    text = "is there anything else i can help you with today"
    first = encoder.encode([text, text])
    assert np.array_equal(first[0], first[1])
    size = len(encoder._cache)
    again = encoder.encode([text, "is there anything else i can help you with today"])
    assert len(encoder._cache) == size
    assert np.array_equal(again[0], first[0])
    # A batch of texts gives the same vectors as one text at a time (padding is masked out).
    short, long = "ok", "could you please confirm the postcode registered on your account"
    batch = SentenceEncoder("bundled", batch_size=8).encode([short, long])
    assert np.allclose(batch[0], encoder.encode([short])[0], atol=1e-5)
    assert np.allclose(batch[1], encoder.encode([long])[0], atol=1e-5)


def test_cache_is_bounded_and_keeps_recent_texts():
    enc = SentenceEncoder("bundled", cache_size=3)
    first = enc.encode(["a", "b", "c"])
    enc.encode(["a"])  # a is now the most recently used
    enc.encode(["d", "e"])
    assert list(enc._cache) == ["a", "d", "e"]
    # More texts in one call than the cache holds still come back complete.
    assert enc.encode(["a", "b", "c", "d", "e"]).shape == (5, 384)
    assert np.array_equal(enc.encode(["b"])[0], first[1])


def test_matches_sentence_transformers(encoder):
    """The pooling must be the model's own (mean over the mask, then L2), or thresholds break."""
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(resolve_model_path("bundled"), device="cpu")
    texts = ["you're speaking with dana at northwind", "what is your date of birth please"]
    ref = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.allclose(encoder.encode(texts), ref, atol=1e-5)


def test_get_encoder_is_one_instance_per_name():
    assert get_encoder("bundled") is get_encoder("bundled")


def test_unknown_model_gives_an_actionable_error(tmp_path):
    enc = SentenceEncoder(str(tmp_path / "no-such-model"))
    with pytest.raises(EncoderError, match="score.sentence_encoder"):
        enc.encode(["hello"])
