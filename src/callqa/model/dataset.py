"""Featurize's output in memory: the utterance table, its arrays, and tensor batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callqa.config import INTENTS
from callqa.files import sha256_file

TABLE, ARRAYS, SUMMARY = "utterances.parquet", "arrays.npz", "featurize.json"


@dataclass
class TrainData:
    table: object  # pandas.DataFrame, one row per utterance
    arrays: dict[str, np.ndarray]  # row-aligned: input_ids, attention_mask, audio, mel, prosody
    hashes: dict[str, str]  # file -> sha256 (lineage)
    licenses: list[str]

    @classmethod
    def load(cls, features_dir: Path) -> TrainData:
        import json

        import pandas as pd

        features_dir = Path(features_dir)
        table_path, arrays_path = features_dir / TABLE, features_dir / ARRAYS
        for p in (table_path, arrays_path):
            if not p.exists():
                raise FileNotFoundError(f"{p}: not found; run `callqa featurize` first")
        table = pd.read_parquet(table_path)
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if any(len(a) != len(table) for a in arrays.values()):
            raise ValueError(f"{features_dir}: arrays and table disagree on the number of rows")
        summary = features_dir / SUMMARY
        licenses = json.loads(summary.read_text())["licenses"] if summary.exists() else []
        hashes = {p.name: sha256_file(p) for p in (table_path, arrays_path)}
        return cls(table.reset_index(drop=True), arrays, hashes, licenses)

    def indices(self, split: str) -> np.ndarray:
        if split == "all":
            return np.arange(len(self.table))
        return np.flatnonzero(self.table["split"].to_numpy() == split)

    def subset(self, idx: np.ndarray) -> TrainData:
        return TrainData(
            self.table.iloc[idx].reset_index(drop=True),
            {k: v[idx] for k, v in self.arrays.items()},
            self.hashes,
            self.licenses,
        )

    def labels(self, emotions: list[str], fine: list[str] = ()) -> dict[str, np.ndarray]:
        """intents (n, k) float, intent_mask (n,) bool, emotion (n,) int (-1 = none) over
        `emotions`, and emotion_head (n,) int over the head's classes: `emotions`, then the
        `fine` ones (a clip's own corpus label, column `emotion_fine`, where it is one)."""
        t = self.table
        index = {e: i for i, e in enumerate(emotions)}
        emotion = np.array(
            [index.get(e, -1) if isinstance(e, str) else -1 for e in t["emotion"]], np.int64
        )
        head = emotion.copy()
        if fine and "emotion_fine" in t:
            extra = {f: len(emotions) + j for j, f in enumerate(fine)}
            own = [extra.get(f, -1) if isinstance(f, str) else -1 for f in t["emotion_fine"]]
            head = np.where(np.array(own) >= 0, own, head)
        return {
            "intents": t[list(INTENTS)].to_numpy(np.float32),
            "intent_mask": t["has_intents"].to_numpy(bool),
            "emotion": emotion,
            "emotion_head": head,
        }

    def present(self) -> np.ndarray:
        """(n, 4) bool: text, audio, mel, prosody available."""
        t = self.table
        audio = t["has_audio"].to_numpy(bool)
        return np.stack([t["has_text"].to_numpy(bool), audio, audio, audio], axis=1)


def batch_tensors(data: TrainData, idx: np.ndarray, device: str, present=None) -> dict:
    """Model inputs of rows `idx` as tensors on `device`."""
    import torch

    a = data.arrays
    if present is None:
        present = data.present()[idx]
    return {
        "input_ids": torch.from_numpy(a["input_ids"][idx].astype(np.int64)).to(device),
        "attention_mask": torch.from_numpy(a["attention_mask"][idx].astype(np.int64)).to(device),
        "audio": torch.from_numpy(a["audio"][idx].astype(np.float32)).to(device),
        "mel": torch.from_numpy(a["mel"][idx].astype(np.float32)).to(device),
        "prosody": torch.from_numpy(a["prosody"][idx].astype(np.float32)).to(device),
        "present": torch.from_numpy(np.asarray(present, bool)).to(device),
    }
