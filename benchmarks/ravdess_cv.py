"""Speaker-independent emotion cross-validation on the shared RAVDESS clips (actors 01-08).

Shared by `bench_emotion_floors.py` and `bench_audio_embed.py`, and meant for a model's own
row: `load_clips()` once, then either `cross_validate(features, clips, task, make_classifier)`
for a fixed feature per clip, or loop over `folds(clips)` to train anything per fold and score
with `scores(y_true, y_pred)`.

    import sys; sys.path.insert(0, "benchmarks")
    from ravdess_cv import load_clips, folds, task_labels, scores

Folds: leave two actors out, one male and one female (odd actor ids are male in RAVDESS):
test actors (1, 2), (3, 4), (5, 6), (7, 8); the other six train. Tasks: "8-class" (RAVDESS's
own labels) and "4-class" (neutral + calm -> neutral, happy, sad, angry; other clips dropped).
Metrics per fold, then mean and standard deviation over the 4 folds: macro-F1 and unweighted
accuracy (UA, the mean of per-class recalls, as EmoBox reports).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callqa.audio.io import load_audio, resample, to_mono

ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("CALLQA_REALDATA", ROOT.parent / "shared" / "realdata"))
RAVDESS = REALDATA / "emotion" / "ravdess"
SR = 16000
TEST_ACTORS = ((1, 2), (3, 4), (5, 6), (7, 8))
FOUR_CLASS = {
    "neutral": "neutral",
    "calm": "neutral",
    "happy": "happy",
    "sad": "sad",
    "angry": "angry",
}
TASKS = ("8-class", "4-class")


@dataclass
class Clip:
    name: str
    emotion: str  # RAVDESS's 8 labels
    actor: int
    audio: np.ndarray  # 16 kHz mono float32


def load_clips(actors: tuple[int, ...] = tuple(range(1, 9))) -> list[Clip]:
    """The shared RAVDESS clips of `actors` (labels.tsv order), decoded to 16 kHz mono."""
    clips = []
    with open(RAVDESS / "labels.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            actor = int(row["speaker"].removeprefix("actor"))
            if actor in actors:
                audio = load_audio(RAVDESS / row["file"])
                x = resample(to_mono(audio.samples), audio.sample_rate_hz, SR)
                clips.append(Clip(row["file"], row["emotion"], actor, x))
    return clips


def task_labels(clips: list[Clip], task: str) -> np.ndarray:
    """Label per clip for `task`; None (object array) where the task drops the clip."""
    if task == "8-class":
        return np.array([c.emotion for c in clips], dtype=object)
    if task == "4-class":
        return np.array([FOUR_CLASS.get(c.emotion) for c in clips], dtype=object)
    raise ValueError(f"unknown task {task!r}: use one of {TASKS}")


def folds(clips: list[Clip], task: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) into `clips`, leaving two actors out; clips the task
    drops are in neither."""
    actors = np.array([c.actor for c in clips])
    kept = np.array([y is not None for y in task_labels(clips, task)])
    for test_actors in TEST_ACTORS:
        test = np.isin(actors, test_actors)
        yield np.flatnonzero(kept & ~test), np.flatnonzero(kept & test)


def scores(y_true, y_pred) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score, f1_score

    return {
        "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
        "ua": float(balanced_accuracy_score(y_true, y_pred)),
    }


def cross_validate(
    features: np.ndarray, clips: list[Clip], task: str, make_classifier: Callable
) -> dict[str, float]:
    """Fit `make_classifier()` (an sklearn estimator) per fold on fixed features.

    Returns mean and std over folds of macro_f1 and ua (keys macro_f1, macro_f1_std, ua,
    ua_std) and the UA of each fold (ua_folds, in `TEST_ACTORS` order).
    """
    y = task_labels(clips, task)
    groups = np.array([c.actor for c in clips])
    per_fold = []
    for train, test in folds(clips, task):
        model = make_classifier()
        model.fit(features[train], y[train].astype(str), groups=groups[train])
        per_fold.append(scores(y[test].astype(str), model.predict(features[test])))
    out = {}
    for key in ("macro_f1", "ua"):
        values = [f[key] for f in per_fold]
        out[key], out[f"{key}_std"] = float(np.mean(values)), float(np.std(values))
    out["ua_folds"] = [f["ua"] for f in per_fold]
    return out


def tuned(estimator, grid: dict) -> Callable:
    """A classifier factory: standardise, then `estimator` with `grid` chosen by leave-actors-
    out cross-validation inside the training fold only (3 inner folds by actor)."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    class _Tuned:
        def fit(self, X, y, groups):
            pipe = make_pipeline(StandardScaler(), clone(estimator))
            name = pipe.steps[-1][0]
            param_grid = {f"{name}__{k}": v for k, v in grid.items()}
            self.search = GridSearchCV(
                pipe, param_grid, scoring="balanced_accuracy", cv=GroupKFold(n_splits=3)
            )
            self.search.fit(X, y, groups=groups)
            return self

        def predict(self, X):
            return self.search.predict(X)

    return _Tuned


def logistic_probe() -> Callable:
    """Standardised logistic regression, C tuned inside the training fold."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(max_iter=3000, class_weight="balanced")
    return tuned(lr, {"C": [0.001, 0.01, 0.1, 1.0]})


def rbf_svm() -> Callable:
    """Standardised RBF SVM, C tuned inside the training fold (gamma = sklearn's "scale")."""
    from sklearn.svm import SVC

    return tuned(SVC(kernel="rbf", class_weight="balanced"), {"C": [1.0, 10.0, 100.0]})
