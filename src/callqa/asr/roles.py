"""Speaker roles for mono calls: diarized turns + their words -> the agent speaker -> role turns.

Turns come from `callqa.asr.diarize`; the agent is the speaker an agent-likeness scorer passed
in rates highest (`pick_agent`), else the one who speaks first. `frame_accuracy` measures turns
or roles against a reference.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

Turn = tuple[float, float, int]
# How agent-like one speaker's sentences sound (higher: more), on the scale of a cosine
# similarity; the Scorer builds it from the scorecard (`Scorecard.agent_likeness`).
AgentLikeness = Callable[[list[str]], float]


def _sentences(text: str, min_words: int) -> list[str]:
    """Lower-cased sentences without punctuation, as the scorecard examples are written."""
    out = []
    for part in re.split(r"(?<=[.?!])\s+", text.strip()):
        words = re.sub(r"[^\w\s']", " ", part.lower()).split()
        if len(words) >= min_words:
            out.append(" ".join(words))
    return out


def pick_agent(
    turn_texts: dict[int, list[tuple[float, str]]],
    agent_likeness: AgentLikeness | None,
    min_similarity: float = 0.2,
    min_margin: float = 0.01,
    min_words: int = 3,
) -> int:
    """The speaker who sounds like the agent, else the one who speaks first.

    Each speaker's sentences of at least `min_words` words ("bye", "hello" and "thanks" come
    from both sides) are scored by `agent_likeness`. The best speaker wins when its score is
    at least `min_similarity` and beats the runner-up by `min_margin`; otherwise (no text, no
    scorer, a close call) the agent is the speaker who speaks first.

    Tuned on the `dev` phrase bank's scripts (150 calls, who speaks first drawn per call; `test`
    was not used): with the greeting, verification, disclosure and closing examples of the
    default scorecard, similarity 0.2 and margin 0.01 find the agent in 65/66 agent-first and
    76/84 customer-first calls (margin 0: 82/84). The earlier setting (greeting and closing
    only, 0.3 / 0.08) found 63/66 and 27/84: when unsure it fell back to the first speaker,
    the customer in many calls. Customers also thank and say goodbye, hence several kinds of
    examples. On audio (benchmarks/bench_roles.py) the agent is found in 20/20 `test` calls.

    Args:
        turn_texts: speaker -> [(start_s, text)] of that speaker's turns.
        agent_likeness: scores one speaker's sentences (lower-cased, no punctuation) on the
            scale of a cosine similarity; None picks the first speaker.
        min_similarity: lowest score that counts as a match.
        min_margin: how much the best speaker must beat the runner-up by.
        min_words: shortest sentence that counts.

    Returns:
        The agent's speaker index (a key of `turn_texts`).
    """
    if not turn_texts:
        raise ValueError("pick_agent needs at least one speaker's turns")
    first = min(
        turn_texts, key=lambda spk: min((t for t, _ in turn_texts[spk]), default=float("inf"))
    )
    sentences = {
        spk: [s for _, text in turns for s in _sentences(text, min_words)]
        for spk, turns in turn_texts.items()
    }
    if len(turn_texts) == 1 or agent_likeness is None or not any(sentences.values()):
        return first
    scores = {spk: float(agent_likeness(ss)) if ss else 0.0 for spk, ss in sentences.items()}
    best, runner_up = sorted(scores, key=scores.get, reverse=True)[:2]
    logger.debug("pick_agent: scores %s, first speaker %s", scores, first)
    if scores[best] >= min_similarity and scores[best] - scores[runner_up] >= min_margin:
        return best
    return first


def assign_roles(turns: Sequence[Turn], agent_speaker: int) -> list[tuple[float, float, str]]:
    """(start_s, end_s, "agent" | "customer") turns: the agent speaker, everyone else customer."""
    return [(s, e, "agent" if spk == agent_speaker else "customer") for s, e, spk in turns]


def turn_texts_from_words(
    turns: Sequence[Turn], words: Sequence[tuple[float, float, str]]
) -> dict[int, list[tuple[float, str]]]:
    """Group ASR words (start_s, end_s, word) into per-speaker turn texts for `pick_agent`.

    A word belongs to the turn that overlaps it most (its midpoint's turn when none does).
    """
    texts: dict[int, list[tuple[float, list[str]]]] = {}
    if not turns:
        return {}
    starts = np.asarray([t[0] for t in turns])
    ends = np.asarray([t[1] for t in turns])
    per_turn: list[list[str]] = [[] for _ in turns]
    for ws, we, w in words:
        overlap = np.minimum(ends, we) - np.maximum(starts, ws)
        if overlap.max() > 0:
            i = int(np.argmax(overlap))
        else:
            mid = (ws + we) / 2
            i = int(np.argmin(np.minimum(np.abs(starts - mid), np.abs(ends - mid))))
        per_turn[i].append(w.strip())
    for (s, _, spk), ws in zip(turns, per_turn, strict=True):
        if ws:
            texts.setdefault(spk, []).append((s, ws))
    return {spk: [(s, " ".join(ws)) for s, ws in items] for spk, items in texts.items()}


def frame_accuracy(
    reference: Sequence[tuple[float, float, object]],
    hypothesis: Sequence[tuple[float, float, object]],
    step_s: float = 0.01,
    best_mapping: bool = True,
) -> tuple[float, float]:
    """Frame-level speaker accuracy, over frames where the reference has exactly one speaker.

    Args:
        reference: (start_s, end_s, label) turns; they may overlap.
        hypothesis: (start_s, end_s, label) turns, e.g. from `diarize` or `assign_roles`.
        step_s: frame length.
        best_mapping: map hypothesis labels to reference labels one-to-one so as to maximise
            the accuracy (diarization: speaker numbers are arbitrary); False compares the
            labels as they are (roles: "agent" must be the agent).

    Returns:
        (accuracy, share of those frames the hypothesis labels at all). Frames the hypothesis
        leaves unlabelled (VAD misses) count as wrong in the accuracy; nan without reference.
    """
    from scipy.optimize import linear_sum_assignment

    end_s = max([e for _, e, _ in [*reference, *hypothesis]], default=0.0)
    n = int(np.ceil(end_s / step_s)) + 1
    ref_labels = sorted({lab for _, _, lab in reference}, key=str)
    hyp_labels = sorted({lab for _, _, lab in hypothesis}, key=str)
    ref = np.zeros((len(ref_labels), n), dtype=bool)
    for s, e, lab in reference:
        ref[ref_labels.index(lab), int(round(s / step_s)) : int(round(e / step_s))] = True
    single = ref.sum(axis=0) == 1
    if not single.any():
        return float("nan"), float("nan")
    hyp = np.full(n, -1)
    for s, e, lab in hypothesis:
        hyp[int(round(s / step_s)) : int(round(e / step_s))] = hyp_labels.index(lab)
    ref_single = np.argmax(ref, axis=0)[single]
    hyp_single = hyp[single]
    labelled = hyp_single >= 0
    counts = np.zeros((len(ref_labels), max(1, len(hyp_labels))))
    np.add.at(counts, (ref_single[labelled], hyp_single[labelled]), 1)
    if best_mapping:
        rows, cols = linear_sum_assignment(-counts)
        correct = counts[rows, cols].sum()
    else:
        correct = sum(
            counts[i, hyp_labels.index(lab)]
            for i, lab in enumerate(ref_labels)
            if lab in hyp_labels
        )
    return float(correct / single.sum()), float(labelled.mean())
