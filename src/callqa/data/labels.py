"""Labels of ingested files: public corpus file names (RAVDESS, CREMA-D), the mapping of corpus
labels onto callqa's, and speaker-disjoint train/val/test splits.

    >>> parse_corpus_name("03-01-05-02-01-01-07")[:3]
    ('ravdess', 'angry', 'ravdess_actor07')
"""

from __future__ import annotations

import hashlib
import re

from callqa.config import SplitConfig

# Filename patterns of public corpora. RAVDESS: modality-channel-emotion-intensity-statement-
# repetition-actor; CREMA-D: actor_sentence_emotion_level.
RAVDESS_RE = re.compile(r"^(\d{2})-(0[12])-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d{2})$")
RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}  # fmt: skip
CREMAD_RE = re.compile(r"^(\d{4})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_([A-Z]{2})$")


def parse_corpus_name(stem: str) -> tuple[str, str, str, dict] | None:
    """Recognise RAVDESS / CREMA-D file names.

    Returns:
        (source, label_raw, speaker, extras) or None when the name matches neither corpus.

    Example:
        >>> parse_corpus_name("03-01-05-02-01-01-07")[:3]
        ('ravdess', 'angry', 'ravdess_actor07')
        >>> parse_corpus_name("1001_DFA_ANG_XX")[:3]
        ('cremad', 'ANG', 'cremad_1001')
    """
    m = RAVDESS_RE.match(stem)
    if m:
        modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
        extras = {
            "corpus": "ravdess",
            "modality": modality,
            "vocal_channel": "speech" if channel == "01" else "song",
            "intensity": "normal" if intensity == "01" else "strong",
            "statement": statement,
            "repetition": repetition,
        }
        return "ravdess", RAVDESS_EMOTIONS[emotion], f"ravdess_actor{actor}", extras
    m = CREMAD_RE.match(stem)
    if m:
        actor, sentence, emotion, level = m.groups()
        extras = {"corpus": "cremad", "sentence": sentence, "level": level}
        return "cremad", emotion, f"cremad_{actor}", extras
    return None


def map_label(label_raw: str | None, label_map: dict[str, str | None]) -> tuple[str | None, str]:
    """Map a corpus label onto a callqa label.

    Exact key first, then a case-insensitive match, so a CSV that says "Angry" still maps.

    Returns:
        (label, status) with status none (no label), ok, out_of_scope (mapped to null) or
        unknown (not a key of `label_map`).
    """
    if label_raw is None or not str(label_raw).strip():
        return None, "none"
    raw = str(label_raw).strip()
    if raw in label_map:
        key = raw
    else:
        folded = {k.casefold(): k for k in label_map}
        key = folded.get(raw.casefold())
        if key is None:
            return None, "unknown"
    mapped = label_map[key]
    return (mapped, "ok") if mapped is not None else (None, "out_of_scope")


def _split_key(seed: int, group: str) -> str:
    return hashlib.sha256(f"{seed}\0{group}".encode()).hexdigest()


def assign_splits(group_sizes: dict[str, int], split: SplitConfig) -> dict[str, str]:
    """Put whole groups (speakers, or single files) into test, val and train.

    Groups are visited in an order fixed by a hash of (seed, group), so the result depends only
    on the seed and the groups, not on file order. Each split takes groups while that brings
    its file count closer to its share; if none fits (few large speakers), it takes the
    smallest one, as long as one group is left for train.

    Example:
        >>> s = assign_splits({"a": 10, "b": 10, "c": 10}, SplitConfig())
        >>> sorted(s.values())
        ['test', 'train', 'val']
    """
    order = sorted(group_sizes, key=lambda g: _split_key(split.seed, g))
    total = sum(group_sizes.values())
    assigned: dict[str, str] = {}
    for name, share in (("test", split.test_share), ("val", split.val_share)):
        target = share * total
        if target <= 0:
            continue
        taken = 0
        for g in order:
            if g in assigned or len(order) - len(assigned) <= 1:
                continue
            size = group_sizes[g]
            if taken + size <= target + 0.5 * size:
                assigned[g] = name
                taken += size
        free = [g for g in order if g not in assigned]
        if taken == 0 and len(free) >= 2:
            assigned[min(free, key=lambda g: group_sizes[g])] = name
    return {g: assigned.get(g, "train") for g in order}
