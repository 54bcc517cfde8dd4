"""Synth corpus splits: which calls are train, val or test, and what each split may draw from.

With `phrase_bank: train` a corpus holds all three splits, disjoint by sentence and by voice:
- call i's split is fixed by its index (golden-ratio sequence u = (i * 0.618...) mod 1: test when
  u < test_share, val when u < test_share + val_share, else train), so even 5 calls get each split;
- test calls speak the `test` bank; train and val calls the train bank, each list cut by the
  SHA-1 of its templates into a val part (about 20%) and a train part (`partition`);
- eSpeak voice variants are cut the same way (`VOICE_SPLITS`): no voice speaks in two splits.
With `phrase_bank: dev` or `test` every call is split "val" / "test" (`test2` and `test3`, a
second and a third held-out bank: "test"), drawn from the whole bank with every voice: those
corpora (the benchmarks') are the same as before splits existed.

Sentence ids name a template and the list it came from: "<list>:<sha1(template)[:10]>".
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import fields, replace
from functools import cache

from callqa.config import SynthConfig
from callqa.data.phrases import PhraseBank, Topic, get_bank

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
GOLDEN = 0.6180339887
VAL_TEMPLATE_SHARE = 0.2  # share of each train-bank list kept for val calls
# Voice variants held out of training (the rest of synth_plan's FEMALE/MALE_VARIANTS train).
VOICE_SPLITS = {"val": ("belinda", "m4", "john"), "test": ("steph2", "m8", "michel")}
# A dev or test corpus: the split every call belongs to.
BANK_SPLIT = {"dev": "val", "test": "test", "test2": "test", "test3": "test"}


def call_split(cfg: SynthConfig, index: int) -> str:
    """The split of call `index` in a corpus made with `cfg` (deterministic, ignores n)."""
    if cfg.phrase_bank != "train":
        return BANK_SPLIT[cfg.phrase_bank]
    u = (index * GOLDEN) % 1.0
    if u < cfg.test_share:
        return "test"
    return "val" if u < cfg.test_share + cfg.val_share else "train"


def bank_for(cfg: SynthConfig, split: str) -> tuple[PhraseBank, str | None]:
    """(phrase bank, split to restrict sentences and voices to, or None for no restriction).

    A train-bank corpus restricts every call to its split; a dev or test corpus does not.
    """
    if cfg.phrase_bank != "train":
        return get_bank(cfg.phrase_bank), None
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: one of {list(SPLITS)}")
    return (get_bank("test") if split == "test" else split_bank("train", split)), split


def voice_pool(pool: tuple[str, ...], split: str | None) -> tuple[str, ...]:
    """The variants of `pool` a split may use (all of them when `split` is None)."""
    if split is None:
        return pool
    if split in VOICE_SPLITS:
        return tuple(v for v in pool if v in VOICE_SPLITS[split])
    held = {v for vs in VOICE_SPLITS.values() for v in vs}
    return tuple(v for v in pool if v not in held)


def sentence_id(list_name: str, template: str) -> str:
    return f"{list_name}:{hashlib.sha1(template.encode('utf-8')).hexdigest()[:10]}"


def _u(key: str) -> float:
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def _key(item) -> str:
    if isinstance(item, Topic):
        return "\n".join(item.steps)
    # An identity pair by its answer: several requests share one ("{customer}."), so pairs
    # with the same answer stay on one side (requests are all distinct).
    return item[1] if isinstance(item, tuple) else item


def partition(items: tuple, split: str) -> tuple:
    """The items of one list that `split` ("train" or "val") may use; stable under edits.

    An item is val when the SHA-1 of its template falls under VAL_TEMPLATE_SHARE. A list of two
    or more items keeps at least one on each side (the lowest hash moves to val, the highest to
    train); a one-item list serves both (`shared_lists` names those).
    """
    if len(items) < 2:
        return items
    order = sorted(range(len(items)), key=lambda i: _u(_key(items[i])))
    val = {i for i in order if _u(_key(items[i])) < VAL_TEMPLATE_SHARE} or {order[0]}
    val.discard(order[-1])
    keep = val if split == "val" else set(range(len(items))) - val
    return tuple(item for i, item in enumerate(items) if i in keep)


@cache
def split_bank(name: str, split: str) -> PhraseBank:
    """Bank `name` with every list cut to `split`'s part (topics move as whole units)."""
    bank = get_bank(name)
    values = {}
    for f in fields(bank):
        value = getattr(bank, f.name)
        if isinstance(value, dict):
            values[f.name] = {k: partition(v, split) for k, v in value.items()}
        elif isinstance(value, tuple):
            values[f.name] = partition(value, split)
    shared = shared_lists(bank)
    if shared:
        logger.debug("bank %s: one-item lists shared by train and val: %s", name, shared)
    return replace(bank, **values)


def shared_lists(bank: PhraseBank) -> list[str]:
    """Lists too short to split (one item): train and val calls both draw from them."""
    out = []
    for f in fields(bank):
        value = getattr(bank, f.name)
        lists = value.items() if isinstance(value, dict) else [(None, value)]
        for key, items in lists:
            if isinstance(items, tuple) and len(items) < 2:
                out.append(f.name if key is None else f"{f.name}.{key}")
    return out
