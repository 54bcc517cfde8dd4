"""Metrics shared by train (validation, thresholds) and evaluate (reports, confusion PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from callqa.config import INTENTS
from callqa.files import atomic_path
from callqa.model.dataset import TrainData


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, labels) -> float:
    from sklearn.metrics import f1_score

    if len(y_true) == 0:
        return float("nan")
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def scores(data: TrainData, pi, pe, emotions, thresholds: dict | None = None) -> dict:
    """Intent macro-F1 (agent rows), emotion macro-F1 (labelled rows) and their mean."""
    lab = data.labels(emotions)
    th = np.array([(thresholds or {}).get(i, 0.5) for i in INTENTS])
    m = lab["intent_mask"]
    intent_f1 = float("nan")
    if m.any():
        y, p = lab["intents"][m].astype(int), (pi[m] >= th).astype(int)
        from sklearn.metrics import f1_score

        intent_f1 = float(f1_score(y, p, average="macro", zero_division=0))
    e = lab["emotion"] >= 0
    emo_f1 = (
        macro_f1(lab["emotion"][e], pe[e].argmax(1), list(range(len(emotions))))
        if e.any()
        else float("nan")
    )
    parts = [v for v in (intent_f1, emo_f1) if v == v]
    return {
        "intent_f1": intent_f1,
        "emotion_f1": emo_f1,
        "macro_f1": float(np.mean(parts)) if parts else 0.0,
    }


TEMPERATURES = np.round(np.geomspace(0.25, 8.0, 61), 4)


def with_temperature(probs: np.ndarray, t: float) -> np.ndarray:
    """softmax(log p / t): the same ranking, softer (t > 1) or sharper (t < 1)."""
    z = np.log(np.clip(probs, 1e-12, 1.0)) / t
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The emotion temperature: the t of `TEMPERATURES` whose `with_temperature(probs, t)`
    fits labels `y` best (least NLL; temperature scaling, Guo et al. 2017). A model that is
    sure of itself on speakers it trained on is softened on ones it did not; argmax (the
    label) never moves. 1 with fewer than 10 labelled rows."""
    if len(y) < 10:
        return 1.0
    return float(min(TEMPERATURES, key=lambda t: nll(with_temperature(probs, t), y)))


def calibration(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> dict:
    """NLL and expected calibration error (top label, `bins` equal-width confidence bins)."""
    if len(y) == 0:
        return {"nll": None, "ece": None}
    conf, hit = probs.max(axis=1), probs.argmax(axis=1) == y
    which = np.minimum((conf * bins).astype(int), bins - 1)
    ece = sum(abs(hit[which == b].mean() - conf[which == b].mean()) * (which == b).mean()
              for b in range(bins) if (which == b).any())  # fmt: skip
    return {"nll": round(nll(probs, y), 4), "ece": round(float(ece), 4)}


GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)
MIN_CALLS = 10  # fewer validation calls than this: choose thresholds per utterance instead


def _best(f1s: list[float], positives: int) -> float:
    """The highest grid threshold whose F1 is within one call's worth of the best.

    Validation sets are small (a few dozen calls, 6-15 of them violations per intent): one call
    more or less found moves F1 by about 1 / (2 * positives), so thresholds that close are a tie
    on the data. The tie goes to the most precise one, because the scorecard ORs the model with
    the rules: a call the model misses is often still found by a rule, but a false model hit is
    never undone (it clears a required phrase the agent never said, or flags a polite call).
    Seen with the closest-to-0.5 tie rule: identity verification at 0.60 (validation F1 0.82
    against 0.83 at 0.80) cleared 11 of 18 calls of the `test2` bank that never verify the
    caller; at 0.85 (this rule) 6 (docs/benchmarks.md, "tie rule").
    """
    tolerance = 1.0 / (2 * max(positives, 1))
    best = max(f1s)
    return float(max(t for t, f in zip(GRID, f1s, strict=True) if f >= best - tolerance - 1e-9))


def choose_thresholds(data: TrainData, pi: np.ndarray) -> dict[str, float]:
    """Per intent, the decision threshold in 0.05..0.95 chosen on validation data.

    The scorecard decides per call (is there a greeting anywhere? any rude line?), so with
    enough validation calls the threshold maximises the call-level F1 of the violation class:
    a call lacks an intent when no agent turn reaches the threshold (forbidden language: is
    flagged when one does). Otherwise per-utterance F1. 0.5 when the data has no positives.
    """
    from sklearn.metrics import f1_score

    lab = data.labels([])
    m = lab["intent_mask"]
    calls = data.table["call_id"].to_numpy() if "call_id" in data.table else None
    call_rows = m & (data.table["source"] == "synth").to_numpy() if calls is not None else m
    groups = {}
    if calls is not None:
        for i in np.flatnonzero(call_rows):
            groups.setdefault(calls[i], []).append(i)
    out = {}
    for k, name in enumerate(INTENTS):
        y = lab["intents"][m, k].astype(int)
        if y.sum() == 0:
            out[name] = 0.5
            continue
        if len(groups) >= MIN_CALLS:
            said = np.array([lab["intents"][rows, k].max() for rows in groups.values()]) > 0
            top = np.array([pi[rows, k].max() for rows in groups.values()])
            flagged = name == "forbidden_language"  # a violation when said, else when missing
            truth = said if flagged else ~said
            f1s = [f1_score(truth, (top >= t) if flagged else (top < t), zero_division=0)
                   for t in GRID]  # fmt: skip
            positives = int(truth.sum())
        else:
            f1s = [f1_score(y, (pi[m, k] >= t).astype(int), zero_division=0) for t in GRID]
            positives = int(y.sum())
        out[name] = _best(f1s, positives)
    return out


def intent_report(labels: dict, pi: np.ndarray, thresholds: dict, rows: np.ndarray) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    out = {}
    for k, name in enumerate(INTENTS):
        y = labels["intents"][rows, k].astype(int)
        p = (pi[rows, k] >= thresholds.get(name, 0.5)).astype(int)
        pr, rc, f1, _ = precision_recall_fscore_support(y, p, average="binary", zero_division=0)
        out[name] = {"precision": round(float(pr), 4), "recall": round(float(rc), 4),
                     "f1": round(float(f1), 4), "support": int(y.sum())}  # fmt: skip
    return out


def emotion_report(y: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict:
    """CONTRACTS.md: macro_f1, accuracy, per_class {label: precision, recall, f1, support}."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    idx = list(range(len(labels)))
    if len(y) == 0:
        return {"macro_f1": None, "accuracy": None, "per_class": {}, "labels": labels, "n": 0}
    pr, rc, f1, sup = precision_recall_fscore_support(y, pred, labels=idx, zero_division=0)
    per = {lab: {"precision": round(float(pr[i]), 4), "recall": round(float(rc[i]), 4),
                 "f1": round(float(f1[i]), 4), "support": int(sup[i])}
           for i, lab in enumerate(labels)}  # fmt: skip
    present = [i for i in idx if sup[i] > 0]
    return {
        "macro_f1": round(
            float(f1_score(y, pred, labels=present, average="macro", zero_division=0)), 4
        ),
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "per_class": per,
        "labels": labels,
        "n": int(len(y)),
    }


def confusion_png(y: np.ndarray, pred: np.ndarray, labels: list[str], path: Path, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y, pred, labels=list(range(len(labels))))
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=120)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_curves(history: list[dict], folder: Path) -> list[Path]:
    """Training curves as CSV (for `dvc plots`) and PNG (offline: DVC's HTML needs a CDN)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keys = ["epoch", "train_loss", "val_macro_f1", "val_intent_f1", "val_emotion_f1"]
    with atomic_path(folder / "curves.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(history)
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3), dpi=110)
    epochs = [h["epoch"] for h in history]
    a.plot(epochs, [h["train_loss"] for h in history], marker="o")
    a.set_title("train loss", fontsize=9)
    for k in keys[2:]:
        b.plot(epochs, [h[k] for h in history], marker="o", label=k.removeprefix("val_"))
    b.set_title("validation F1", fontsize=9)
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.set_xlabel("epoch")
    fig.tight_layout()
    with atomic_path(folder / "curves.png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return [folder / "curves.csv", folder / "curves.png"]
