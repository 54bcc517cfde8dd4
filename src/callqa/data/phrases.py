"""Phrase banks for synthetic calls: what agents and customers say, loaded from data files.

Each bank is `callqa/data/banks/<name>.yaml` (package data of `callqa.data.banks`):
- `train`: the synth default, for model training; develop against it freely.
- `dev`: seen (it was called `heldout` until rules were written from it); tune on it freely.
- `test`: written once, then read only through the numbers the benchmark prints.
- `test2`: written 2026-12-03 by a helper, never read by the developer; numbers only.
- `test3`: written 2026-12-03 by a helper, never read by the developer; numbers only.

Templates take `{company}`, `{agent}`, `{customer}`, `{first}`, `{dob}`, `{digits}`, `{code}`.
Numbers are spelled out: eSpeak reads digits as whole numbers, and the agent's speech rate label
counts the script's words.

`near_misses` (optional; the train, test2 and test3 banks have it) maps each intent to agent
sentences that resemble it but do not carry it (a mid-call "hello, are you still there?", an
order-number question, "our records show ..."): hard negatives that synth inserts without changing
labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources

import yaml

from callqa.config import EMOTIONS, INTENTS  # INTENTS: the keys `near_misses` may have
from callqa.data import banks

BANK_NAMES = ("train", "dev", "test", "test2", "test3")
# Values that fill the {dob}, {digits} and {code} slots (shared by all banks).
DAYS = ("third", "ninth", "twelfth", "fifteenth", "twenty first", "twenty eighth", "first")
MONTHS = ("January", "March", "April", "June", "August", "October", "November", "December")
YEARS = (
    "nineteen seventy four",
    "nineteen eighty two",
    "nineteen ninety",
    "nineteen sixty eight",
    "two thousand and one",
    "nineteen ninety six",
)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Topic:
    """One customer problem and how the agent handles it."""

    problem: tuple[str, ...]  # customer states the issue (one is picked)
    steps: tuple[str, str, str]  # agent: findings, action, outcome (in order)
    question: tuple[str, ...]  # customer follow-up question
    answer: tuple[str, ...]  # agent answer to it


@dataclass(frozen=True)
class PhraseBank:
    name: str
    companies: tuple[str, ...]
    agent_names: tuple[str, ...]
    customer_names: tuple[str, ...]
    greetings: tuple[str, ...]
    no_greeting: tuple[str, ...]  # agent's first words when the greeting is omitted
    disclosures: tuple[str, ...]
    identity: tuple[tuple[str, str], ...]  # (agent request, customer answer)
    identity_ok: tuple[str, ...]  # agent confirms the details
    closings: tuple[str, ...]
    no_closing: tuple[str, ...]  # agent's last words when the closing is omitted
    forbidden: tuple[str, ...]  # rude, abusive or dismissive agent language, profanity
    hold: tuple[str, ...]  # agent, before looking something up
    resume: tuple[str, ...]  # agent, after it (no thanks-for-waiting: reads as a closing)
    interrupt: tuple[str, ...]  # agent cutting in (starts a turn that overlaps the customer)
    empathy: dict[str, tuple[str, ...]]  # by customer emotion
    opener: dict[str, tuple[str, ...]]  # customer, by emotion, before the problem
    reaction: dict[str, tuple[str, ...]]  # customer, by emotion, after agent steps
    thanks: dict[str, tuple[str, ...]]  # customer, by emotion, after the fix
    goodbye: dict[str, tuple[str, ...]]  # customer, by emotion, after the closing
    trailing: tuple[str, ...]  # customer's last words when the agent did not close
    topics: tuple[Topic, ...]
    # intent -> agent sentences that resemble it but do not carry it (optional)
    near_misses: dict[str, tuple[str, ...]] = field(default_factory=dict)


_BY_EMOTION = ("empathy", "opener", "reaction", "thanks", "goodbye")


@cache
def get_bank(name: str) -> PhraseBank:
    """The phrase bank called `name` (one of BANK_NAMES), read from its data file."""
    if name not in BANK_NAMES:
        raise ValueError(
            f"unknown phrase bank {name!r}: set synth.phrase_bank to one of {list(BANK_NAMES)}"
        )
    path = resources.files(banks).joinpath(f"{name}.yaml")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return _parse(name, raw, str(path))


def _parse(name: str, raw: dict, where: str) -> PhraseBank:
    wanted = {f.name for f in fields(PhraseBank)} - {"name", "near_misses"}
    given = set(raw) - {"near_misses"}
    if given != wanted:
        raise ValueError(
            f"{where}: keys differ from a phrase bank's: missing {sorted(wanted - given)}, "
            f"unknown {sorted(given - wanted)}"
        )
    for key in _BY_EMOTION:
        if set(raw[key]) != set(EMOTIONS):
            raise ValueError(f"{where}: `{key}` must have one list per emotion {EMOTIONS}")
    near = raw.get("near_misses") or {}
    if not set(near) <= set(INTENTS) or not all(near.values()):
        raise ValueError(
            f"{where}: `near_misses` maps intents {INTENTS} to non-empty lists (got {sorted(near)})"
        )
    forbidden = raw["forbidden"]  # a list, or kinds (dismissive, profane, ...) -> lists
    if isinstance(forbidden, dict):
        forbidden = [line for lines in forbidden.values() for line in lines]
    values = {k: tuple(v) for k, v in raw.items() if k not in (*_BY_EMOTION, "near_misses")}
    values["near_misses"] = {i: tuple(v) for i, v in near.items()}
    values.update({k: {e: tuple(v) for e, v in raw[k].items()} for k in _BY_EMOTION})
    values["forbidden"] = tuple(forbidden)
    values["identity"] = tuple((p["ask"], p["answer"]) for p in raw["identity"])
    values["topics"] = tuple(
        Topic(
            problem=tuple(t["problem"]),
            steps=tuple(t["steps"]),
            question=tuple(t["question"]),
            answer=tuple(t["answer"]),
        )
        for t in raw["topics"]
    )
    return PhraseBank(name=name, **values)


def all_sentences(bank: PhraseBank) -> list[str]:
    """Every template string in a bank (for overlap tests against scorecards)."""
    out: list[str] = []
    for f in fields(bank):
        if f.name != "name":
            _collect(getattr(bank, f.name), out)
    return out


def _collect(value, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, Topic):
        for v in vars(value).values():
            _collect(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _collect(v, out)
    elif isinstance(value, tuple | list):
        for v in value:
            _collect(v, out)
