"""Labelled utterances: sidecar turns aligned to ASR words, text rows from the train split."""

import random

from callqa.config import INTENTS
from callqa.model.bank_text import filler, sentences, train_split_rows
from callqa.model.utterances import asr_confusions, call_rows, confuse

SIDECAR = {
    "split": "train",
    "bank": "train",
    "emotion": {"agent": "neutral", "customer": "angry"},
    "turns": [
        {"role": "agent", "start": 0.5, "end": 3.0, "text": "Hello, Acme, this call is recorded.",
         "intents": ["greeting", "recording_disclosure"], "voice": "en-us+f3",
         "sentence_ids": ["greetings:aa", "disclosures:bb"]},
        {"role": "customer", "start": 2.8, "end": 5.0, "text": "My bill is wrong.",
         "intents": [], "voice": "en+m1", "sentence_ids": ["body:cc"]},
        {"role": "agent", "start": 6.0, "end": 7.0, "text": "Right.", "intents": [],
         "voice": "en-us+f3", "sentence_ids": ["opener:dd"]},
    ],
}  # fmt: skip


def _w(word, start, end):
    return {"word": word, "start": start, "end": end}


TRANSCRIPT = {
    "roles_from": "channels",
    "segments": [
        {"role": "agent", "words": [_w("Hello", 0.6, 0.9), _w("Acme,", 1.0, 1.3),
                                    _w("this", 1.5, 1.7), _w("call", 1.8, 2.0),
                                    _w("is", 2.1, 2.2), _w("recorded.", 2.3, 2.9)]},
        {"role": "customer", "words": [_w("My", 2.9, 3.1), _w("bill", 3.2, 3.5),
                                       _w("is", 3.6, 3.7), _w("long.", 3.8, 4.4)]},
    ],
}  # fmt: skip


def test_turns_take_the_asr_words_of_their_role_and_the_sidecar_labels():
    rows = call_rows(SIDECAR, TRANSCRIPT, "c1")
    assert [r["role"] for r in rows] == ["agent", "customer"]  # the unheard "Right." is dropped
    agent, customer = rows
    assert agent["text"] == "Hello Acme, this call is recorded."
    assert customer["text"] == "My bill is long."  # what the ASR heard, not the script
    assert customer["script"] == "My bill is wrong."
    assert agent["greeting"] == agent["recording_disclosure"] == 1 and agent["closing"] == 0
    assert agent["has_intents"] and not customer["has_intents"]
    assert (agent["emotion"], customer["emotion"]) == ("neutral", "angry")
    assert agent["speaker"] == "en-us+f3" and agent["sentence_ids"] == "greetings:aa disclosures:bb"
    assert 0.5 <= agent["start"] < agent["end"] <= 3.0


def test_on_a_mono_call_words_are_taken_by_time_whatever_their_diarized_role():
    mono = {**TRANSCRIPT, "roles_from": "diarization"}
    mono["segments"] = [{**s, "role": "customer"} for s in TRANSCRIPT["segments"]]
    rows = call_rows(SIDECAR, mono, "c1")
    assert rows[0]["text"].startswith("Hello Acme")


def test_asr_confusions_and_substitution():
    pairs = [("please verify your identity", "please verify your entity")] * 3
    pairs += [("thanks for calling", "thanks for calling")]
    table = asr_confusions(pairs)
    assert table == {"identity": ["entity"]}
    rng = random.Random(0)
    assert confuse("Identity check", table, rng, p=1.0) == "entity check"


def test_text_rows_come_from_the_train_split_only_with_the_lists_intents():
    from callqa.data.synth_splits import sentence_id, split_bank

    rows = train_split_rows(1, {})
    val = {sentence_id("text", t) for t, *_ in sentences(split_bank("train", "val"))}
    train_ids = {r["sentence_ids"] for r in rows}
    assert train_ids and not (train_ids & val)
    assert all(r["split"] == "train" and not r["has_audio"] for r in rows)
    agent = [r for r in rows if r["role"] == "agent"]
    for intent in INTENTS:  # each intent has positives and the rest are negatives
        assert 50 <= sum(r[intent] for r in agent) < len(agent) / 2, intent
    assert not any("{" in r["text"] for r in rows)  # every slot filled
    bank = split_bank("train", "train")
    assert "{" not in filler(bank)("Hi {customer}, {agent} at {company}", random.Random(1))
