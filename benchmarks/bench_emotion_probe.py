"""The frozen-encoder probe floor on RAVDESS, without and with the speaker context.

The floor of issue 11: mean and std of the tiny.en encoder's middle and last layers (each clip
alone in its window, as featurize computes them) + a standardised logistic regression whose C
is chosen inside the training fold (`ravdess_cv.logistic_probe`); leave two actors out over
actors 01-08. Then the same probe given the speaker context the QA model gets
(`features.speaker_relative`: the features and their deviation from the actor's mean over the
task's clips), so the model's gain from the context is not mistaken for a gain from training;
and, for the 4-class task, the probe fitted on RAVDESS's own 8 labels as the QA model is
(`featurize.clip_fine_labels`).

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
                  f"  UA {r['ua']:.3f} +- {r['ua_std']:.3f}{_folds(r['ua_folds'])}",
                  flush=True)  # fmt: skip
    # The QA model's 4-class task trains on RAVDESS's own 8 labels too (featurize.
    # clip_fine_labels); the same for the probe: fit on 8 classes, calm counts toward neutral,
    # fearful / disgust / surprised drop out, scored on the 4-class clips.
    groups = [f"speaker:{c.actor}" for c in clips]
    both = speaker_relative({"audio": audio, "prosody": audio[:, :1]}, groups)["audio"]
    for name, x in (("probe, own labels", audio), ("probe + context, own labels", both)):
        f1, ua = _own_labels_probe(x, clips)
        print(f"4-class: {name:32s} macro-F1 {np.mean(f1):.3f} +- {np.std(f1):.3f}"
              f"  UA {np.mean(ua):.3f} +- {np.std(ua):.3f}{_folds(ua)}", flush=True)  # fmt: skip


def _folds(ua: list[float]) -> str:
    return " (per fold " + " ".join(f"{u:.3f}" for u in ua) + ")"


def _own_labels_probe(x: np.ndarray, clips) -> tuple[list[float], list[float]]:
    from ravdess_cv import FOUR_CLASS, folds, logistic_probe, scores, task_labels

    four, own = task_labels(clips, "4-class"), task_labels(clips, "8-class")
    actors = np.array([c.actor for c in clips])
    reported = sorted(set(FOUR_CLASS.values()))
    f1, ua = [], []
    for (_, test), (train, _) in zip(folds(clips, "4-class"), folds(clips, "8-class"), strict=True):
        probe = logistic_probe()().fit(x[train], own[train].astype(str), groups=actors[train])
        p, names = probe.search.predict_proba(x[test]), list(probe.search.classes_)
        toward = np.array([FOUR_CLASS.get(n) for n in names], dtype=object)
        merged = np.stack([p[:, toward == r].sum(1) for r in reported], axis=1)
        s = scores(four[test].astype(str), [reported[i] for i in merged.argmax(1)])
        f1.append(s["macro_f1"])
        ua.append(s["ua"])
    return f1, ua


if __name__ == "__main__":
    sys.exit(main())
