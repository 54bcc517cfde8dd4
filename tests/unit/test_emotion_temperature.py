"""The emotion temperature: fitted on validation rows, it makes probabilities mean what they say
(temperature scaling) and never moves the label."""

import numpy as np
import pytest

from callqa.model.metrics import calibration, fit_temperature, with_temperature


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sampled(n: int, sharpen: float, seed: int = 0):
    """Labels drawn from true probabilities softmax(z); a model that reports softmax(sharpen z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, size=(n, 4))
    true = _softmax(z)
    y = np.array([rng.choice(4, p=p) for p in true])
    return _softmax(sharpen * z), y


def test_an_over_confident_model_gets_its_temperature_back():
    probs, y = _sampled(4000, sharpen=2.5)
    t = fit_temperature(probs, y)
    assert t == pytest.approx(2.5, rel=0.12)
    before, after = calibration(probs, y), calibration(with_temperature(probs, t), y)
    assert after["nll"] < before["nll"] and after["ece"] < 0.03 < before["ece"]
    # an under-confident one is sharpened (t < 1)
    soft, y2 = _sampled(4000, sharpen=0.5, seed=1)
    assert fit_temperature(soft, y2) == pytest.approx(0.5, rel=0.12)


def test_temperature_keeps_the_label_and_one_is_the_identity():
    probs, _ = _sampled(200, sharpen=1.0)
    for t in (0.3, 1.0, 4.0):
        out = with_temperature(probs, t)
        assert (out.argmax(1) == probs.argmax(1)).all()
        assert np.allclose(out.sum(1), 1.0)
    assert np.allclose(with_temperature(probs, 1.0), probs, atol=1e-9)
    assert with_temperature(probs, 4.0).max(1).mean() < probs.max(1).mean()


def test_too_few_labelled_rows_keep_the_network_as_it_is():
    probs, y = _sampled(9, sharpen=3.0)
    assert fit_temperature(probs, y) == 1.0
    assert calibration(probs[:0], y[:0]) == {"nll": None, "ece": None}
