"""Text normalisation shared by the scorecard's matching and the models: raw text -> plain words."""

from __future__ import annotations

import re

_NON_WORD = re.compile(r"[^a-z0-9'*]+")


def normalize_text(text: str) -> str:
    """Lower case, punctuation to spaces (apostrophes and ASR's `f***` asterisks kept).

    >>> normalize_text("Thank you -- you're welcome!")
    "thank you you're welcome"
    """
    text = text.lower().replace("\u2019", "'")
    return " ".join(t.strip("'") for t in _NON_WORD.sub(" ", text).split() if t.strip("'"))
