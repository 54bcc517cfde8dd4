"""Labelled utterances, pure: synth sidecar turns aligned to ASR words, emotion clips, text rows.

One row per utterance. Audio rows come from calls (a sidecar turn with the words the project's
own ASR heard inside its span, so the model learns ASR noise) and from labelled emotion clips
(RAVDESS / CREMA-D: text left out, the words are the same two statements for every emotion).
Text-only rows come from the phrase bank's train-split sentences, filled in and, for half of
them, passed through the word substitutions the ASR made on the train calls.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from callqa.config import INTENTS
from callqa.data.synth_plan import KIND_INTENT  # sidecar part kind -> intent

EDGE_S = 0.25  # a word belongs to a turn when its midpoint lies within this of the turn's span


def turn_intents(turn: dict) -> list[str]:
    """The intents an agent turn carries (sidecar `intents`, else derived from `kinds`)."""
    if turn.get("role") != "agent":
        return []
    if "intents" in turn:
        return [i for i in INTENTS if i in turn["intents"]]
    return [i for i in INTENTS if i in {KIND_INTENT.get(k) for k in turn.get("kinds", [])}]


def turn_words(turn: dict, segments: list[dict], mono: bool) -> list[dict]:
    """ASR words whose midpoint lies in the turn's span (its role's words on a stereo call)."""
    lo, hi = turn["start"] - EDGE_S, turn["end"] + EDGE_S
    out = []
    for seg in segments:
        if not mono and seg["role"] != turn["role"]:
            continue
        for w in seg.get("words", []):
            if lo <= (w["start"] + w["end"]) / 2 <= hi:
                out.append(w)
    return sorted(out, key=lambda w: w["start"])


def call_rows(sidecar: dict, transcript: dict, call_id: str, min_words: int = 1) -> list[dict]:
    """One row per sidecar turn that the ASR heard at least `min_words` words of.

    >>> side = {"split": "train", "bank": "train", "emotion": {"agent": "neutral",
    ...         "customer": "sad"}, "turns": [{"role": "agent", "start": 0.0, "end": 2.0,
    ...         "text": "Hello, Acme.", "kinds": ["greeting"], "voice": "en"}]}
    >>> tr = {"roles_from": "channels", "segments": [{"role": "agent", "start": 0.1, "end": 1.9,
    ...       "words": [{"word": "Hello", "start": 0.1, "end": 0.5},
    ...                 {"word": "Acme.", "start": 0.6, "end": 1.9}]}]}
    >>> r = call_rows(side, tr, "c1")[0]
    >>> r["text"], r["greeting"], r["closing"], r["emotion"]
    ('Hello Acme.', 1, 0, 'neutral')
    """
    mono = transcript.get("roles_from") == "diarization"
    segments = transcript.get("segments", [])
    emotion = sidecar.get("emotion") or {}
    rows = []
    for i, turn in enumerate(sidecar.get("turns", [])):
        words = turn_words(turn, segments, mono)
        if len(words) < min_words:
            continue
        intents = turn_intents(turn)
        row = {
            "utt_id": f"{call_id}:{i}",
            "call_id": call_id,
            "source": "synth",
            "role": turn["role"],
            "start": round(max(turn["start"], words[0]["start"] - 0.05), 3),
            "end": round(min(turn["end"], words[-1]["end"] + 0.05), 3),
            "text": " ".join(w["word"].strip() for w in words),
            "script": turn.get("text", ""),
            "n_words": len(words),
            "speaker": turn.get("voice"),
            "sentence_ids": " ".join(turn.get("sentence_ids", [])),
            "split": sidecar.get("split"),
            "bank": sidecar.get("bank"),
            "has_intents": turn["role"] == "agent",
            "emotion": emotion.get(turn["role"]),
            "has_text": True,
            "has_audio": True,
        }
        row.update({name: int(name in intents) for name in INTENTS})
        rows.append(row)
    return rows


def clip_row(
    call_id: str, path: str, label: str, speaker: str | None, split: str, dur: float,
    channel: str = "clean", fine: str | None = None,
):  # fmt: skip
    """One emotion clip: the whole file, customer role, text left out (see module doc);
    `channel`: "clean", or "telephone" for the clip as heard over a phone line; `label`: the
    reported emotion (None: out of scope), `fine`: the corpus's own label (None: not kept)."""
    row = {
        "utt_id": f"{call_id}:0",
        "call_id": call_id,
        "source": "emotion_clip",
        "role": "customer",
        "start": 0.0,
        "end": round(dur, 3),
        "text": "",
        "script": "",
        "n_words": 0,
        "speaker": speaker,
        "sentence_ids": "",
        "split": split,
        "bank": None,
        "has_intents": False,
        "emotion": label,
        "emotion_fine": fine,
        "has_text": False,
        "has_audio": True,
        "path": path,
        "channel": channel,
    }
    row.update({name: 0 for name in INTENTS})
    return row


# ------------------------------------------------------------------ ASR confusions (augmentation)

_WORD = re.compile(r"[a-z']+", re.IGNORECASE)


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def asr_confusions(pairs: list[tuple[str, str]], min_count: int = 2) -> dict[str, list[str]]:
    """Word substitutions the ASR made: script word -> the words it was heard as (>= min_count).

    `pairs` are (script, ASR text) of the same turns. Alignment by jiwer (Levenshtein).

    >>> asr_confusions([("verify your identity", "verify your entity")] * 2)
    {'identity': ['entity']}
    """
    import jiwer

    counts: Counter = Counter()
    for ref, hyp in pairs:
        r, h = _tokens(ref), _tokens(hyp)
        if not r or not h:
            continue
        out = jiwer.process_words(" ".join(r), " ".join(h))
        for chunk in out.alignments[0]:
            if chunk.type == "substitute":
                for k in range(chunk.ref_end_idx - chunk.ref_start_idx):
                    counts[(r[chunk.ref_start_idx + k], h[chunk.hyp_start_idx + k])] += 1
    table: dict[str, list[str]] = {}
    for (ref_w, hyp_w), n in counts.most_common():
        if n >= min_count:
            table.setdefault(ref_w, []).append(hyp_w)
    return table


def confuse(text: str, table: dict[str, list[str]], rng: random.Random, p: float = 0.5) -> str:
    """`text` with each word that the ASR confused replaced, with probability `p`."""

    def sub(m: re.Match) -> str:
        options = table.get(m.group(0).lower())
        return rng.choice(options) if options and rng.random() < p else m.group(0)

    return _WORD.sub(sub, text)


def text_rows(
    sentences: list[tuple[str, list[str], str]],
    fill,
    n_per_sentence: int,
    table: dict[str, list[str]],
    seed: int = 0,
) -> list[dict]:
    """Text-only rows: each (template, intents, sentence_id) filled `n_per_sentence` times.

    `fill(template, rng)` fills the template's slots. Every other copy goes through the ASR
    confusion table. Rows are train split, agent role, no audio.
    """
    rng = random.Random(seed)
    rows = []
    for k, (template, intents, sid) in enumerate(sentences):
        for j in range(n_per_sentence):
            text = fill(template, rng)
            if j % 2 == 1:
                text = confuse(text, table, rng)
            row = {
                "utt_id": f"text:{k}:{j}",
                "call_id": f"text:{k}",
                "source": "bank_text",
                "role": "agent",
                "start": 0.0,
                "end": 0.0,
                "text": text,
                "script": template,
                "n_words": len(text.split()),
                "speaker": None,
                "sentence_ids": sid,
                "split": "train",
                "bank": "train",
                "has_intents": True,
                "emotion": None,
                "has_text": True,
                "has_audio": False,
            }
            row.update({name: int(name in intents) for name in INTENTS})
            rows.append(row)
    return rows
