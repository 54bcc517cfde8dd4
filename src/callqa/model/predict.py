"""A trained model directory, loaded once, applied to a call's segments or to labelled clips.

The Scorer holds one `Predictor`: per segment it gives intent probabilities (the scorecard's
`model` checks read them) and per role an emotion (duration-weighted mean of the segments'
emotion probabilities).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callqa.audio.prepare import Prepared
from callqa.model.features import FeatureExtractor, resolve_device

ROLES = ("agent", "customer")


@dataclass
class CallPrediction:
    intents: list[dict[str, float]]  # one per segment, in the segments' order
    emotion: dict[str, dict]  # role -> {"label": str | None, "scores": {emotion: p}}


class Predictor:
    """Model + feature extractor; `load(path)` raises FileNotFoundError / ValueError."""

    def __init__(self, model, saved, device: str):
        self.model, self.saved, self.device = model, saved, device
        self.path = Path(saved.path)
        self.intents = list(saved.spec.intents)
        self.emotions = list(saved.spec.emotions)
        self.thresholds = dict(saved.thresholds)
        # emotion probabilities: softmax(logits / temperature) (`metrics.fit_temperature`)
        self.temperature = saved.emotion_temperature
        self.licenses = saved.licenses
        self.features = FeatureExtractor(saved.features, device)
        self._sha256: str | None = None

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Predictor:
        from callqa.model import modeldir

        device = resolve_device(device)
        model, saved = modeldir.load(Path(path), device)
        return cls(model, saved, device)

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            from callqa.model.modeldir import model_sha256

            self._sha256 = model_sha256(self.path)
        return self._sha256

    def predict_arrays(self, arrays: dict[str, np.ndarray], present: np.ndarray, batch: int = 64):
        """(intent probabilities (n, k), emotion probabilities (n, m)) of feature rows."""
        import torch

        from callqa.model.dataset import TrainData, batch_tensors
        from callqa.model.fusion import reported_logits

        n = len(present)
        if n == 0:
            return np.zeros((0, len(self.intents))), np.zeros((0, len(self.emotions)))
        data = TrainData(table=None, arrays=arrays, hashes={}, licenses=[])
        pi, pe = [], []
        with torch.no_grad():
            for s in range(0, n, batch):
                idx = np.arange(s, min(n, s + batch))
                li, le = self.model(batch_tensors(data, idx, self.device, present[idx]))
                le = reported_logits(self.model.spec, le)
                pi.append(torch.sigmoid(li.float()).cpu().numpy())
                pe.append(torch.softmax(le.float() / self.temperature, dim=1).cpu().numpy())
        return np.concatenate(pi), np.concatenate(pe)

    def predict_call(self, prep: Prepared, segments: list) -> CallPrediction:
        """Intent probabilities per segment and an emotion per role of one prepared call."""
        spans = [(s.role, s.start, s.end, len(s.words)) for s in segments]
        if not spans:
            return CallPrediction([], {r: {"label": None, "scores": {}} for r in ROLES})
        arrays = self.features.with_context(
            self.features.call_features(prep, spans), [s.role for s in segments]
        )
        texts = [s.text for s in segments]
        arrays.update(self.features.tokens(texts))
        has_text = np.array([bool(t.strip()) for t in texts])
        present = np.stack([has_text, *([np.ones(len(spans), bool)] * 3)], axis=1)
        pi, pe = self.predict_arrays(arrays, present)
        intents = [{name: round(float(p), 4) for name, p in zip(self.intents, row, strict=True)}
                   for row in pi]  # fmt: skip
        dur = np.array([max(s.end - s.start, 1e-3) for s in segments])
        emotion = {}
        for role in ROLES:
            mask = np.array([s.role == role for s in segments])
            emotion[role] = self._role_emotion(pe[mask], dur[mask]) if mask.any() else {
                "label": None, "scores": {}}  # fmt: skip
        return CallPrediction(intents, emotion)

    def _role_emotion(self, pe: np.ndarray, weights: np.ndarray) -> dict:
        mean = (pe * weights[:, None]).sum(0) / weights.sum()
        scores = {e: round(float(p), 4) for e, p in zip(self.emotions, mean, strict=True)}
        return {"label": self.emotions[int(mean.argmax())], "scores": scores}

    def predict_clips(self, arrays: dict[str, np.ndarray], speakers=None) -> np.ndarray:
        """Emotion probabilities (n, m) of whole single-speaker clips (text left out).

        `arrays`: `self.features.clip_features` of the clips (concatenated over batches);
        `speakers`: who speaks in each clip (None: unknown), the speaker context of the model's
        features (all of a speaker's clips should be in one call).
        """
        n = len(arrays["audio"])
        arrays = self.features.with_context(
            arrays, speakers if speakers is not None else [None] * n
        )
        arrays.update(self.features.tokens([""] * n))
        present = np.zeros((n, 4), bool)
        present[:, 1:] = True
        return self.predict_arrays(arrays, present)[1]
