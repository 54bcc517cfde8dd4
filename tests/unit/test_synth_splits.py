"""Synth splits (train / val / test calls disjoint by sentence and voice) and near-misses."""

from __future__ import annotations

import pytest

from callqa.config import SynthConfig
from callqa.data import synth, synth_plan
from callqa.data.phrases import INTENTS, get_bank
from callqa.data.synth_splits import VOICE_SPLITS, bank_for, call_split, shared_lists

N = 60


def _plans(cfg: SynthConfig, n: int = N):
    seeds, fails = synth.call_seeds(cfg.seed, n), synth.failure_plan(cfg, n)
    out = []
    for i in range(n):
        split = call_split(cfg, i)
        bank, restrict = bank_for(cfg, split)
        out.append((split, fails[i], synth.plan_call(seeds[i], fails[i], bank, restrict)))
    return out


def _kinds(plan) -> set[str]:
    return {k for ln in plan.lines if ln.role == "agent" for k, _ in ln.parts}


def test_splits_are_disjoint_by_sentence_and_voice():
    cfg = SynthConfig(seed=11)
    plans = _plans(cfg)
    assert {s for s, _, _ in plans} == {"train", "val", "test"}
    assert [call_split(cfg, i) for i in range(5)].count("test") >= 1  # small corpora too
    sids = {s: set() for s in ("train", "val", "test")}
    voices = {s: set() for s in ("train", "val", "test")}
    for split, _, plan in plans:
        for ln in plan.lines:
            assert len(ln.sids) == len(ln.parts)
            # Customer names and the like are formatted in; ids cover the templates.
            sids[split].update(ln.sids)
        voices[split].update(v.name for v in plan.voices.values())
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not sids[a] & sids[b], (a, b, sorted(sids[a] & sids[b])[:5])
        assert not voices[a] & voices[b], (a, b, voices[a] & voices[b])
    held = {v for vs in VOICE_SPLITS.values() for v in vs}
    assert all(name.split("+")[-1] not in held for name in voices["train"])
    assert not shared_lists(get_bank("train"))  # every list is long enough to split


def test_near_misses_leave_labels_unchanged():
    plans = _plans(SynthConfig(seed=3))
    inserted = 0
    for split, fails, plan in plans:
        near = [k for ln in plan.lines for k, _ in ln.parts if k == "near_miss"]
        assert len(near) <= synth_plan.MAX_NEAR_MISSES
        inserted += len(near)
        if split == "test":  # the test bank has no near-misses
            assert not near
        kinds = _kinds(plan)
        assert ("identity" in kinds) != fails["identity_verification"]
        assert ("disclosure" in kinds) != fails["recording_disclosure"]
        assert ("forbidden" in kinds) == fails["forbidden_language"]
        for ln in plan.lines:
            if ln.role == "customer":
                assert "near_miss" not in {k for k, _ in ln.parts}
    assert inserted >= N // 3
    # Labels come from kinds: a turn carrying only near-misses carries no intent.
    act = {"agent": [(0.0, 3.0)], "customer": [(3.2, 4.0)]}
    turns = [{"role": "agent", "start": 0.0, "kinds": ["body", "near_miss"]}]
    checks, _, _ = synth.compute_labels(act, turns, 4.0, 8)
    assert not checks["greeting"] and not checks["closing"] and checks["forbidden_language"]


def test_missing_intent_draws_its_near_miss():
    bank = bank_for(SynthConfig(), "train")[0]
    fails = dict.fromkeys(synth.CHECK_IDS, False) | {"identity_verification": True}
    ids = [
        sid
        for seed in range(40)
        for ln in synth.plan_call(seed, fails, bank, "train").lines
        for sid in ln.sids
        if sid.startswith("near_misses.")
    ]
    share = sum(s.startswith("near_misses.identity_verification:") for s in ids) / 40
    assert share >= 0.4, share


@pytest.mark.parametrize("name", ["dev", "test", "test2", "test3"])
def test_dev_and_test_corpora_are_single_split_and_unrestricted(name):
    cfg = SynthConfig(phrase_bank=name)
    split = {"dev": "val", "test": "test", "test2": "test", "test3": "test"}[name]
    assert {call_split(cfg, i) for i in range(30)} == {split}
    bank, restrict = bank_for(cfg, call_split(cfg, 0))
    assert bank is get_bank(name) and restrict is None
    # test2 and test3 (written later) carry held-out near-misses of every intent; dev and test none.
    assert set(bank.near_misses) == (set(INTENTS) if name in ("test2", "test3") else set())
    # Without a split, a plan draws every voice, as before splits existed.
    names = {
        v.name.split("+")[-1]
        for seed in range(80)
        for v in synth.plan_call(seed, dict.fromkeys(synth.CHECK_IDS, False), bank).voices.values()
    }
    assert names & {v for vs in VOICE_SPLITS.values() for v in vs}


def test_train_bank_sizes():
    bank = get_bank("train")
    for key in ("greetings", "disclosures", "closings", "forbidden"):
        assert len(getattr(bank, key)) >= 150, key
    assert len(bank.identity) >= 120
    assert len(bank.no_greeting) >= 50 and len(bank.no_closing) >= 50
    assert set(bank.near_misses) == set(INTENTS)
    assert all(len(v) >= 60 for v in bank.near_misses.values())
