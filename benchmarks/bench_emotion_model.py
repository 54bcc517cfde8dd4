"""The fine-tuned QA model's emotion branch on RAVDESS, same folds as the floors.

Leave two actors out over actors 01-08 (`ravdess_cv.folds`); in each fold the model (the
project's `QAModel`: Whisper-encoder MLP + log-mel CNN + prosody MLP, fused, text absent) is
trained by `callqa.model.train.fit` on five of the six training actors, stops early on the sixth,
and is scored on the two left out. Features are featurize's (`FeatureExtractor.clip_features`),
computed once. With `featurize.clip_fine_labels` (the default) the 4-class task trains as
featurize does: the training actors' clips keep RAVDESS's own label too, fearful / disgust /
surprised clips included, and the model reports the 4 classes. Prints macro-F1 and UA per task,
mean +- std over the 4 folds, beside the floors of `bench_emotion_floors.py`, and the UA on
the early-stopping actor: compare settings (`--set`) by that figure, never by the test folds'.

    python benchmarks/bench_emotion_model.py [--epochs 30] [--tasks 8-class 4-class] \
        [--fine-labels off] [--speeds 0.9 1.1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]


def clip_table(clips, arrays, labels, split, fine=None):
    import pandas as pd

    from callqa.config import INTENTS
    from callqa.model.dataset import TrainData

    n = len(clips)
    table = pd.DataFrame({
        "split": split, "emotion": labels, "has_intents": False, "has_text": False,
        "has_audio": True, "source": "emotion_clip", **{i: 0 for i in INTENTS},
    })  # fmt: skip
    if fine is not None:  # featurize.clip_fine_labels: each clip's own RAVDESS label too
        table["emotion_fine"] = fine
    arrays = {**arrays, "input_ids": np.zeros((n, 4), np.int32),
              "attention_mask": np.zeros((n, 4), np.int8)}  # fmt: skip
    return TrainData(table, arrays, {"bench": "ravdess"}, [])


def at_speed(audio, speed: float):
    """`audio` played `speed` times as fast (pitch, formants and tempo together), mono."""
    from callqa.audio.io import Audio, resample, to_mono

    if speed == 1.0:
        return audio
    sr = audio.sample_rate_hz
    x = resample(to_mono(audio.samples), round(sr * speed), sr)
    return Audio(x[None, :].astype(np.float32), sr, audio.subtype)


def _override(kv: str) -> tuple[str, object]:
    import yaml

    key, _, value = kv.partition("=")
    return key, yaml.safe_load(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--tasks", nargs="+", default=["8-class", "4-class"])
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="train params to override, e.g. emotion_linear=false head_lr=3e-4",
    )
    ap.add_argument(
        "--fine-labels",
        choices=["params", "on", "off"],
        default="params",
        help="train the 4-class task on RAVDESS's own 8 labels too "
        "(featurize.clip_fine_labels; default: as params.yaml says)",
    )
    ap.add_argument(
        "--speeds",
        nargs="*",
        type=float,
        default=[],
        help="training actors' clips also at these speeds (e.g. 0.9 1.1), each a voice of "
        "its own (tried 2026-12-04: not adopted, docs/benchmarks.md)",
    )
    args = ap.parse_args()

    from ravdess_cv import RAVDESS, folds, load_clips, scores, task_labels

    from callqa.audio.io import load_audio
    from callqa.audio.prepare import prepare
    from callqa.config import TrainConfig, load_params
    from callqa.model.features import FeatureExtractor
    from callqa.model.featurize import feature_spec
    from callqa.model.train import fit, predict_probs

    params = load_params(ROOT / "params.yaml")
    clips = load_clips()
    t0 = time.perf_counter()
    feat = params.featurize
    ext = FeatureExtractor(feature_spec(feat), "cpu")
    speeds = args.speeds

    def features(speed: float) -> dict[str, np.ndarray]:
        parts = []
        # groups of 8 share encoder windows: a random order, so a group is never one emotion
        order = np.random.default_rng(0).permutation(len(clips))
        for s in range(0, len(clips), 8):
            preps = [prepare(at_speed(load_audio(RAVDESS / clips[i].name), speed),
                             params.preprocess, with_logmel=True)
                     for i in order[s : s + 8]]  # fmt: skip
            parts.append(ext.clip_features(preps))
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in ("audio", "mel", "prosody")}
        back = np.argsort(order)
        return {k: v[back] for k, v in arrays.items()}

    arrays = features(1.0)
    sped = {f: features(f) for f in speeds}
    print(f"features of {len(clips)} clips at speeds {[1.0, *speeds]}: "
          f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    actors = np.array([c.actor for c in clips])
    cfg = TrainConfig(epochs=args.epochs, patience=8, progress=False, device="cpu",
                      batch_size=32, head_lr=1e-3, modality_dropout=0.0,
                      **dict(_override(kv) for kv in args.set))  # fmt: skip
    own = task_labels(clips, "8-class")
    use_fine = {"params": params.featurize.clip_fine_labels, "on": True, "off": False}
    for task in args.tasks:
        labels = task_labels(clips, task)
        fine = use_fine[args.fine_labels] and task != "8-class"
        per_fold = []
        for (train_idx, test_idx), (train_all, _) in zip(
            folds(clips, task), folds(clips, "8-class"), strict=True
        ):
            if fine:  # as featurize: the training actors' out-of-scope clips train too
                train_idx = train_all
            # early stopping on one training actor (the highest id), never on the test pair
            val_actor = max(set(actors[train_idx]))
            split = np.array(["none"] * len(clips), dtype=object)
            split[train_idx] = np.where(actors[train_idx] == val_actor, "val", "train")
            split[test_idx] = "test"
            keep = np.flatnonzero(split != "none")
            raw = {k: v[keep] for k, v in arrays.items()}
            # speaker context as featurize gives it: each actor's clips of this task's labels
            speaker = [f"speaker:{actors[i]}" for i in keep]
            own_keep = list(own[keep]) if fine else None
            data = clip_table([clips[i] for i in keep], ext.with_context(raw, speaker),
                              list(labels[keep]), list(split[keep]), own_keep)  # fmt: skip
            train_data = data
            if speeds:  # the training actors' clips at other speeds, each a voice of its own
                tr = np.flatnonzero(split == "train")
                extra = {k: np.concatenate([sped[f][k][tr] for f in speeds]) for k in raw}
                groups = [f"speaker:{actors[i]}@{f}" for f in speeds for i in tr]
                extra = ext.with_context(extra, groups)
                both = {k: np.concatenate([data.arrays[k], extra[k]]) for k in extra}
                n_extra = len(groups)
                idx = np.concatenate([keep, np.tile(tr, len(speeds))])
                split_all = list(split[keep]) + ["train"] * n_extra
                train_data = clip_table([clips[i] for i in idx], both, list(labels[idx]),
                                        split_all, list(own[idx]) if fine else None)  # fmt: skip
            result_model = fit(cfg, train_data, None).model
            names = result_model.spec.emotions
            # "alone": each test clip scored without the rest of its speaker's clips
            alone = [None if split[i] == "test" else g for i, g in zip(keep, speaker, strict=True)]
            data_alone = clip_table([clips[i] for i in keep], ext.with_context(raw, alone),
                                    list(labels[keep]), list(split[keep]), own_keep)  # fmt: skip
            fold = {}
            for part, table in (("val", data), ("test", data), ("alone", data_alone)):
                idx = table.indices("test" if part == "alone" else part)
                rows = table.subset(idx[table.table["emotion"].notna().to_numpy()[idx]])
                _, pe = predict_probs(result_model, rows, "cpu")
                fold[part] = scores(list(rows.table["emotion"]), [names[i] for i in pe.argmax(1)])
            per_fold.append(fold)
        val_ua = np.mean([s["val"]["ua"] for s in per_fold])
        print(
            f"{task}: fine-tuned QA model (audio branches{', own labels' if fine else ''})  "
            f"{_summary(per_fold, 'test')}  "
            f"(early-stopping actor: UA {val_ua:.3f}; choose settings by this one)",
            flush=True,
        )
        if ext.spec.speaker_relative:
            print(f"{task}: the same models, each test clip alone (no other clip of its speaker)"
                  f"  {_summary(per_fold, 'alone')}", flush=True)  # fmt: skip


def _summary(per_fold: list[dict], part: str) -> str:
    f1, ua = ([s[part][k] for s in per_fold] for k in ("macro_f1", "ua"))
    folds = " ".join(f"{u:.3f}" for u in ua)
    return (f"macro-F1 {np.mean(f1):.3f} +- {np.std(f1):.3f}  "
            f"UA {np.mean(ua):.3f} +- {np.std(ua):.3f} (per fold {folds})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
