"""The frozen-encoder probe floor on RAVDESS, without and with the speaker context.

The floor of issue 11: mean and std of the tiny.en encoder's middle and last layers (each clip
alone in its window, as featurize computes them) + a standardised logistic regression whose C
is chosen inside the training fold (`ravdess_cv.logistic_probe`); leave two actors out over
actors 01-08. Then the same probe given the speaker context the QA model gets
(`features.speaker_relative`: the features and their deviation from the actor's mean over the
task's clips), so the model's gain from the context is not mistaken for a gain from training.

    python benchmarks/bench_emotion_probe.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from ravdess_cv import RAVDESS, TASKS, cross_validate, load_clips, logistic_probe, task_labels

    from callqa.audio.io import load_audio
    from callqa.audio.prepare import prepare
    from callqa.config import load_params
    from callqa.model.features import FeatureExtractor, FeatureSpec, speaker_relative

    params = load_params(ROOT / "params.yaml")
    clips = load_clips()
    ext = FeatureExtractor(FeatureSpec(), "cpu")
    t0 = time.perf_counter()
    audio = np.concatenate([
        ext.clip_features([prepare(load_audio(RAVDESS / c.name), params.preprocess,
                                   with_logmel=True)])["audio"]
        for c in clips
    ])  # fmt: skip
    print(f"features of {len(clips)} clips: {time.perf_counter() - t0:.0f} s", flush=True)
    for task in TASKS:
        kept = np.array([y is not None for y in task_labels(clips, task)])
        groups = [f"speaker:{c.actor}" if k else None for c, k in zip(clips, kept, strict=True)]
        both = speaker_relative({"audio": audio, "prosody": audio[:, :1]}, groups)["audio"]
        for name, x in (("probe (the floor)", audio), ("probe + speaker context", both),
                        ("probe on the deviations alone", both[:, audio.shape[1]:])):  # fmt: skip
            r = cross_validate(x, clips, task, logistic_probe())
            print(f"{task}: {name:32s} macro-F1 {r['macro_f1']:.3f} +- {r['macro_f1_std']:.3f}"
                  f"  UA {r['ua']:.3f} +- {r['ua_std']:.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
