"""A tiny TrainData for fast model tests: real MiniLM tokens, random audio features."""

import numpy as np
import pandas as pd

from callqa.config import INTENTS
from callqa.model.dataset import TrainData

# Sentences per intent (the first five) and two customer lines with no intent.
SENTENCES = [
    ("hello thank you for calling acme", "greeting", None),
    ("can you confirm your date of birth please", "identity_verification", None),
    ("this call is recorded for quality purposes", "recording_disclosure", None),
    ("thanks for calling have a nice day", "closing", None),
    ("that is a stupid question", "forbidden_language", None),
    ("i am really annoyed with this bill", None, "angry"),
    ("great that fixed it thanks", None, "happy"),
]


def tiny_data(n_train: int = 28, n_val: int = 14) -> TrainData:
    """Utterances with real MiniLM tokens and random audio features; labels follow the text."""
    from transformers import AutoTokenizer

    from callqa.text.encoder import resolve_model_path

    rng = np.random.default_rng(0)
    n = n_train + n_val
    rows = [SENTENCES[i % len(SENTENCES)] for i in range(n)]
    tok = AutoTokenizer.from_pretrained(resolve_model_path("bundled"))
    enc = tok([r[0] for r in rows], padding="max_length", max_length=12, truncation=True)
    table = pd.DataFrame(
        {
            "split": ["train"] * n_train + ["val"] * n_val,
            **{i: [float(r[1] == i) for r in rows] for i in INTENTS},
            "has_intents": [r[2] is None for r in rows],
            "emotion": [r[2] or "neutral" for r in rows],
            "has_text": True,
            "has_audio": True,
        }
    )
    arrays = {
        "input_ids": np.array(enc["input_ids"], np.int64),
        "attention_mask": np.array(enc["attention_mask"], np.int64),
        "audio": rng.normal(size=(n, 8)).astype(np.float32),
        "mel": rng.normal(size=(n, 16, 32)).astype(np.float32),
        "prosody": rng.normal(size=(n, 4)).astype(np.float32),
    }
    return TrainData(table, arrays, {"arrays.npz": "ab" * 32}, [])
