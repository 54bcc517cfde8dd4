"""`callqa evaluate`: how good is a trained model, on data it never trained on.

On featurize's test split (default): per-intent precision / recall / F1 of agent turns at the
saved thresholds; emotion macro-F1, accuracy and a per-class report (all labelled rows, and
call turns and emotion clips separately); a confusion-matrix PNG; the ablation text-only /
audio-only / fused (the same model with the other modalities masked); and call-level check F1
of the scorecard rules-only against rules + model on the split's calls (`callqa.model.calls`).
With `--manifest M` it evaluates emotion on every labelled row of M instead (e.g. a RAVDESS
folder ingested with `callqa ingest`). Metrics JSON (CONTRACTS.md) for DVC; all logged to MLflow.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from callqa.config import EvaluateConfig, PreprocessConfig
from callqa.files import atomic_path
from callqa.model.metrics import confusion_png, emotion_report, intent_report

logger = logging.getLogger(__name__)


ABLATION = {  # which of (text, audio, mel, prosody) the model may see
    "fused": (True, True, True, True),
    "text_only": (True, False, False, False),
    "audio_only": (False, True, True, True),
}


def feature_metrics(predictor, data, split: str, plots_dir: Path | None) -> dict:
    """Intent and emotion metrics on featurize rows of `split`, with the ablation."""
    rows = data.subset(data.indices(split))
    t = rows.table
    # labels the model cannot output (trained without them) count as errors, never dropped
    seen = {e for e in t["emotion"] if isinstance(e, str)}
    unknown = sorted(seen - set(predictor.emotions))
    if unknown:
        logger.warning(
            "evaluate: %d %s rows carry emotions the model cannot output (%s); they count as "
            "errors", int(t["emotion"].isin(unknown).sum()), split, ", ".join(unknown),
        )  # fmt: skip
    emotions = list(predictor.emotions) + unknown
    lab = rows.labels(emotions)
    base = rows.present()
    call_turns = (t["source"] == "synth").to_numpy()
    intent_rows = np.flatnonzero(lab["intent_mask"] & call_turns)
    out: dict = {"n": int(len(t)), "ablation": {}, "emotions_unknown_to_model": unknown}
    for name, allowed in ABLATION.items():
        pres = base & np.array(allowed)[None, :]
        pi, pe = predictor.predict_arrays(rows.arrays, pres)
        e = lab["emotion"] >= 0
        emo = emotion_report(lab["emotion"][e], pe[e].argmax(1), emotions)
        ints = (
            intent_report(lab, pi, predictor.thresholds, intent_rows) if len(intent_rows) else None
        )
        intent_macro = float(np.mean([v["f1"] for v in ints.values()])) if ints else None
        out["ablation"][name] = {
            "intent_macro_f1": intent_macro,
            "emotion_macro_f1": emo["macro_f1"],
        }
        if name != "fused":
            continue
        out["intents"] = ints
        out["emotion"] = {**emo, "calibration": _calibration(predictor, pe[e], lab["emotion"][e])}
        clips = (t["source"] == "emotion_clip").to_numpy()
        channel = np.full(len(t), "clean", dtype=object)
        if "channel" in t:
            channel = t["channel"].fillna("clean").to_numpy()
        parts = {"calls": call_turns, "clips": clips & (channel == "clean")}
        for name in sorted(set(channel[clips]) - {"clean"}):  # clips_telephone, clips_pcm8
            parts[f"clips_{name}"] = clips & (channel == name)
        for part, mask in parts.items():
            m = e & mask
            out[f"emotion_{part}"] = emotion_report(lab["emotion"][m], pe[m].argmax(1), emotions)
        if plots_dir is not None and e.any():
            out["confusion_png"] = str(confusion_png(
                lab["emotion"][e], pe[e].argmax(1), emotions, plots_dir / "confusion_emotion.png",
                f"emotion, {split} split (n={int(e.sum())})",
            ))  # fmt: skip
    return out


def run(cfg: EvaluateConfig, score_calls=None) -> dict:
    """Evaluate `cfg.model` on featurize's `cfg.split`; write metrics JSON (+ PNG); summary.

    `score_calls(predictor, data, split) -> dict` (the CLI passes `mlops.calls.call_level`)
    adds the scorecard's call-level F1, rules only against rules + model.
    """
    from callqa import tracking
    from callqa.model.dataset import TrainData
    from callqa.model.predict import Predictor

    predictor = Predictor.load(cfg.model)
    data = TrainData.load(cfg.features_dir)
    metrics = feature_metrics(predictor, data, cfg.split, Path(cfg.plots_dir))
    metrics["split"] = cfg.split
    metrics["model"] = {"path": str(cfg.model), "sha256": predictor.sha256}
    if cfg.score_calls and score_calls is not None:
        metrics["calls"] = score_calls(predictor, data, cfg.split)
    _write(cfg.metrics_out, metrics)
    tracking.set_tags({"model.sha256": predictor.sha256, "licenses": "; ".join(predictor.licenses)})
    tracking.log_metrics(_flat_scores(metrics))
    tracking.log_artifact(cfg.metrics_out)
    if metrics.get("confusion_png"):
        tracking.log_artifact(metrics["confusion_png"])
    return _summary(metrics, cfg.metrics_out)


def run_manifest(
    cfg: EvaluateConfig, manifest: Path, pre: PreprocessConfig, progress: bool = True
) -> dict:
    """Emotion metrics on every labelled row of a manifest / accepted table (split filter).

    Clips are conditioned with `pre` (params.yaml `preprocess`), as featurize did for training.
    """
    import pandas as pd

    from callqa import tracking
    from callqa.audio.io import AudioError, load_audio
    from callqa.audio.prepare import prepare
    from callqa.model.predict import Predictor
    from callqa.progress import track

    if not Path(manifest).exists():
        raise FileNotFoundError(f"{manifest}: not found")
    table = pd.read_parquet(manifest)
    if "label" not in table or "path" not in table:
        raise ValueError(f"{manifest}: needs `path` and `label` columns (a callqa manifest)")
    if cfg.split != "all" and "split" in table:
        table = table[table["split"] == cfg.split]
    predictor = Predictor.load(cfg.model)
    index = {e: i for i, e in enumerate(predictor.emotions)}
    labelled = table[table["label"].notna()]
    keep = labelled[labelled["label"].isin(list(index))]
    skipped = int(len(labelled) - len(keep))
    y, parts, speakers, failed = [], [], [], 0
    # Clips share encoder windows in groups of 8: mix the order so a group is never one label.
    keep = keep.sample(frac=1.0, random_state=0)
    rows = list(
        zip(keep["path"], keep["label"], keep.get("speaker", [None] * len(keep)), strict=True)
    )
    for s in track(range(0, len(rows), 8), "evaluate clips", enabled=progress):
        preps = []
        for path, label, speaker in rows[s : s + 8]:
            try:
                preps.append(prepare(load_audio(path), pre, with_logmel=True))
            except AudioError as err:
                logger.warning("%s: %s", path, err.message)
                failed += 1
                continue
            y.append(index[label])
            speakers.append(speaker if isinstance(speaker, str) and speaker else None)
        if preps:
            parts.append(predictor.features.clip_features(preps))
    if parts:  # the speaker context needs all of a speaker's clips at once
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        pe = predictor.predict_clips(arrays, speakers)
    else:
        pe = np.zeros((0, len(index)))
    y_arr = np.array(y, dtype=int)
    emotion = emotion_report(y_arr, pe.argmax(1) if len(pe) else y_arr, predictor.emotions)
    metrics = {
        "n": int(len(y_arr)),
        "emotion": {**emotion, "calibration": _calibration(predictor, pe, y_arr)},
        "intents": None,
        "model": {"path": str(cfg.model), "sha256": predictor.sha256},
        "skipped": skipped,
        "failed": failed,
        "manifest": str(manifest),
        "split": cfg.split,
    }
    if len(y_arr):
        metrics["confusion_png"] = str(confusion_png(
            y_arr, pe.argmax(1), predictor.emotions,
            Path(cfg.metrics_out).with_suffix(".confusion.png"), f"emotion, {Path(manifest).name}",
        ))  # fmt: skip
    _write(cfg.metrics_out, metrics)
    tracking.log_metrics(_flat_scores(metrics))
    tracking.log_artifact(cfg.metrics_out)
    return _summary(metrics, cfg.metrics_out)


def _calibration(predictor, pe: np.ndarray, y: np.ndarray) -> dict:
    """How far the emotion probabilities can be trusted: NLL and ECE with the model's saved
    temperature, and (`at_t1`) as the network gave them; over the rows whose label the model
    can output."""
    from callqa.model.metrics import calibration, with_temperature

    known = y < pe.shape[1]
    pe, y = pe[known], y[known]
    raw = with_temperature(pe, 1.0 / predictor.temperature)  # undo the saved temperature
    return {**calibration(pe, y), "temperature": predictor.temperature,
            "at_t1": calibration(raw, y)}  # fmt: skip


def _write(path: Path, metrics: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")


def _flat_scores(metrics: dict) -> dict:
    out = {}
    emo = metrics.get("emotion") or {}
    for k in ("macro_f1", "accuracy"):
        if emo.get(k) is not None:
            out[f"emotion_{k}"] = emo[k]
    for k in ("nll", "ece"):
        if (emo.get("calibration") or {}).get(k) is not None:
            out[f"emotion_{k}"] = emo["calibration"][k]
    for name, v in (metrics.get("intents") or {}).items():
        out[f"intent_f1_{name}"] = v["f1"]
    for name, v in (metrics.get("ablation") or {}).items():
        for k, x in v.items():
            if x is not None:
                out[f"ablation_{name}_{k}"] = x
    for variant, checks in (metrics.get("calls") or {}).get("f1", {}).items():
        for check, f in checks.items():
            if f is not None:
                out[f"call_f1_{variant}_{check}"] = f
    return out


def _summary(metrics: dict, path: Path) -> dict:
    emo = metrics.get("emotion") or {}
    out = {
        "n": metrics["n"],
        "emotion_macro_f1": emo.get("macro_f1"),
        "emotion_accuracy": emo.get("accuracy"),
    }
    if metrics.get("intents"):
        out["intent_f1"] = {k: v["f1"] for k, v in metrics["intents"].items()}
    if metrics.get("ablation"):
        out["ablation"] = {k: f"intents {v['intent_macro_f1']}, emotion {v['emotion_macro_f1']}"
                           for k, v in metrics["ablation"].items()}  # fmt: skip
    for k in ("skipped", "failed"):  # labels outside the model's; files that would not load
        if metrics.get(k) is not None:
            out[k] = metrics[k]
    out["metrics_out"] = str(path)
    return out
