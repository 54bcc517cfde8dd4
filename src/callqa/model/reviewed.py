"""Reviewers' labels in the utterance table (`callqa review export` -> `callqa featurize`).

A human answer overrides a synth label: where people say an intent was not heard in a call,
no agent line of it carries the intent; where they say it was heard and the synth label has no
line for it, the lines the system's evidence points at carry it (people agreed with that
evidence), and when there is no such evidence the call's agent lines carry no intent labels at
all (which line it was is unknown). Reviewed calls that are not synth calls join as rows of
their own, one per transcript segment (with the reviewers' corrections), labelled the same way;
they carry intent labels only when every intent is known for them, and no emotion.
Their splits are drawn per agent (or per call when the agent is unknown), so a speaker and a
call never cross splits.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from callqa.config import INTENTS, SplitConfig

logger = logging.getLogger(__name__)

SOURCE = "review"


def load_labels(path: Path | None):
    """The labels table, or None when there is none (no path, no file, no row)."""
    import pandas as pd

    if path is None or not Path(path).exists():
        return None
    table = pd.read_parquet(path)
    return table if len(table) else None


def _overlaps(row: dict, spans: list[list[float]]) -> bool:
    return any(min(row["end"], b) - max(row["start"], a) > 0 for a, b in spans)


def override_synth(rows: list[dict], label: dict) -> int:
    """Apply one reviewed call's labels to its synth rows in place; returns the number of
    intent values people changed."""
    intents = json.loads(label["intents"])
    evidence = json.loads(label["intent_evidence"])
    agent = [r for r in rows if r["has_intents"]]
    changed = 0
    for intent, heard in intents.items():
        if intent not in INTENTS:
            continue
        if not heard:
            changed += sum(r[intent] for r in agent)
            for r in agent:
                r[intent] = 0
        elif not any(r[intent] for r in agent):
            spans = evidence.get(intent)
            for r in agent:
                if spans:
                    r[intent] = int(_overlaps(r, spans))
                    changed += r[intent]
                else:
                    r["has_intents"] = False
    for r in rows:
        r["reviewed"] = True
    return changed


def review_rows(label: dict, split: str) -> list[dict]:
    """Utterance rows of one reviewed call that is not a synth call."""
    intents = json.loads(label["intents"])
    evidence = json.loads(label["intent_evidence"])
    known = set(INTENTS) <= set(intents) and all(not intents[i] or evidence.get(i) for i in INTENTS)
    speaker = label.get("agent") or label["call_id"]
    rows = []
    for k, seg in enumerate(json.loads(label["segments"])):
        text = (seg.get("text") or "").strip()
        if not text:
            continue
        row = {
            "utt_id": f"{label['call_id']}:r{k}", "call_id": label["call_id"], "source": SOURCE,
            "role": seg["role"], "start": float(seg["start"]), "end": float(seg["end"]),
            "text": text, "script": "", "n_words": len(text.split()),
            "speaker": f"{speaker}:{seg['role']}", "sentence_ids": "", "split": split,
            "bank": None, "has_intents": seg["role"] == "agent" and known, "emotion": None,
            "has_text": True, "has_audio": True, "path": label.get("audio_path"),
            "reviewed": True,
        }  # fmt: skip
        row.update({i: int(bool(intents.get(i)) and _overlaps(row, evidence.get(i, [])))
                    for i in INTENTS})  # fmt: skip
        rows.append(row)
    return rows


def review_splits(labels, split: SplitConfig) -> dict[str, str]:
    """call id -> split, whole agents (or calls) at a time."""
    from callqa.data.labels import assign_splits

    groups = {r["call_id"]: r.get("agent") or r["call_id"] for r in labels.to_dict("records")}
    sizes: dict[str, int] = {}
    for g in groups.values():
        sizes[g] = sizes.get(g, 0) + 1
    by_group = assign_splits(sizes, split)
    return {call_id: by_group[g] for call_id, g in groups.items()}
