"""Text-only training rows from the `train` bank's train-split sentences (never val or test).

Agent lines carry the intent of the list they come from (greetings -> greeting, ...); the
hard negatives (curt openers and sign-offs, near-misses of each intent) and the ordinary agent
lines (hold, resume, empathy, topic steps) carry none. Customer lines carry the emotion of
their list. Templates are filled with the bank's names and spelled-out numbers.
"""

from __future__ import annotations

import random

from callqa.data.phrases import DAYS, DIGITS, MONTHS, YEARS, PhraseBank

# bank field -> the intents its agent lines carry
AGENT_LISTS = {
    "greetings": ["greeting"],
    "disclosures": ["recording_disclosure"],
    "closings": ["closing"],
    "forbidden": ["forbidden_language"],
    "no_greeting": [],
    "no_closing": [],
    "hold": [],
    "resume": [],
    "interrupt": [],
    "identity_ok": [],
}
CUSTOMER_BY_EMOTION = ("opener", "reaction", "thanks", "goodbye")


def sentences(bank: PhraseBank) -> list[tuple[str, str, list[str], str | None]]:
    """(template, role, intents, emotion) of every line of `bank` (a split bank)."""
    out: list[tuple[str, str, list[str], str | None]] = []
    for name, intents in AGENT_LISTS.items():
        out += [(t, "agent", intents, None) for t in getattr(bank, name)]
    out += [(ask, "agent", ["identity_verification"], None) for ask, _ in bank.identity]
    out += [(answer, "customer", [], None) for _, answer in bank.identity]
    for lines in bank.near_misses.values():
        out += [(t, "agent", [], None) for t in lines]
    for lines in bank.empathy.values():
        out += [(t, "agent", [], None) for t in lines]
    for key in CUSTOMER_BY_EMOTION:
        for emotion, lines in getattr(bank, key).items():
            out += [(t, "customer", [], emotion) for t in lines]
    for topic in bank.topics:
        out += [(t, "agent", [], None) for t in (*topic.steps, *topic.answer)]
        out += [(t, "customer", [], None) for t in (*topic.problem, *topic.question)]
    return out


def filler(bank: PhraseBank):
    """fill(template, rng): the template with names and spelled-out numbers put in."""

    def fill(template: str, rng: random.Random) -> str:
        customer = rng.choice(bank.customer_names)

        def digits(n: int) -> str:
            return " ".join(rng.choice(DIGITS) for _ in range(n))

        values = {
            "company": rng.choice(bank.companies),
            "agent": rng.choice(bank.agent_names),
            "customer": customer,
            "first": customer.split()[0],
            "dob": f"{rng.choice(DAYS)} of {rng.choice(MONTHS)}, {rng.choice(YEARS)}",
            "digits": digits(4),
            "code": digits(5),
        }
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            return template

    return fill


def train_split_rows(n_per_sentence: int, table: dict[str, list[str]], seed: int = 0) -> list[dict]:
    """Rows for featurize: each train-split line filled `n_per_sentence` times (see module)."""
    from callqa.data.synth_splits import sentence_id, split_bank
    from callqa.model.utterances import text_rows

    bank = split_bank("train", "train")
    items = sentences(bank)
    rows = text_rows(
        [(t, intents, sentence_id("text", t)) for t, _, intents, _ in items],
        filler(bank), n_per_sentence, table, seed,
    )  # fmt: skip
    for row in rows:
        k = int(row["call_id"].split(":")[1])
        _, role, _, emotion = items[k]
        row.update(role=role, has_intents=role == "agent", emotion=emotion)
    return rows
