"""Per-intent decision thresholds chosen on validation calls (`model.metrics.choose_thresholds`)."""

import numpy as np
import pandas as pd

from callqa.config import INTENTS
from callqa.model.dataset import TrainData
from callqa.model.metrics import choose_thresholds

K = INTENTS.index("recording_disclosure")


def _calls(top: list[float], disclosed: list[bool]) -> tuple[TrainData, np.ndarray]:
    """One agent turn per call; its disclosure probability is `top`, its label `disclosed`."""
    n = len(top)
    table = pd.DataFrame({
        "call_id": [f"c{i}" for i in range(n)], "source": "synth", "split": "val",
        "has_intents": True, "emotion": None, "has_text": True, "has_audio": True,
        **{name: [float(d) if name == "recording_disclosure" else 1.0 for d in disclosed]
           for name in INTENTS},
    })  # fmt: skip
    pi = np.full((n, len(INTENTS)), 0.9)
    pi[:, K] = top
    return TrainData(table, {}, {}, []), pi


def test_a_tie_within_one_call_goes_to_the_most_precise_threshold():
    # 6 calls lack the disclosure, 24 have it. The model hears a disclosure in one call without
    # it (0.9: never found) and is unsure of one call with it (0.3).
    missing = [0.02, 0.03, 0.05, 0.08, 0.12, 0.9]
    present = [0.3] + [0.7 + 0.01 * i for i in range(23)]
    data, pi = _calls(missing + present, [False] * 6 + [True] * 24)
    # 0.15-0.30: 5 of 6 violations, no false flag (F1 0.91); 0.35-0.70: 5 of 6 and the unsure
    # call (0.83), one call apart: a tie, and the tie goes to the highest, 0.7 (a model hit
    # needs 0.7). 0.75 also takes 0.70-0.74 for violations (F1 0.62): out.
    assert choose_thresholds(data, pi)["recording_disclosure"] == 0.7


def test_a_threshold_far_from_the_best_is_not_taken():
    # violations sit at 0.55-0.65: at 0.5 the model finds none of them, at 0.7-0.8 all of them,
    # at 0.85 it also calls ten calls with the disclosure violations (F1 0.55)
    missing = [0.55, 0.58, 0.6, 0.62, 0.64, 0.65]
    present = [0.8 + 0.005 * i for i in range(24)]
    data, pi = _calls(missing + present, [False] * 6 + [True] * 24)
    assert choose_thresholds(data, pi)["recording_disclosure"] == 0.8
