"""Scorecard evaluation (qa/runs.py, qa/evaluate.py): word runs, each check type, windows, call
score, and the default scorecard's semantic checks on paraphrase / negative sets with the real
encoder."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from callqa.qa.evaluate import evaluate, resolve_window
from callqa.qa.runs import build_runs, candidate_spans
from callqa.qa.scorecard import Scorecard, ScorecardError, SemanticCheck
from callqa.schemas import CHECK_IDS, Segment, Word
from callqa.text.normalize import normalize_text

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "scorecards" / "default.yaml"
logger = logging.getLogger(__name__)


def seg(role: str, start: float, text: str, wps: float = 2.5, words: bool = True) -> Segment:
    """A segment whose words are spaced 1/wps seconds apart, as ASR word timestamps are."""
    ws = [
        Word(word=f" {w}", start=round(start + i / wps, 3), end=round(start + (i + 0.8) / wps, 3))
        for i, w in enumerate(text.split())
    ]
    end = ws[-1].end if ws else start
    return Segment(role=role, start=start, end=end, text=f" {text}", words=ws if words else [])


def card_of(*checks: dict, path: str = "test.yaml") -> Scorecard:
    return Scorecard.from_dict({"name": "t", "checks": list(checks)}, path=path)


def run1(check: dict, segments: list[Segment], metrics: dict | None = None, duration_s=60.0):
    results, score, critical = evaluate(card_of(check), segments, metrics or {}, duration_s, None)
    return results[0]


# ---------------------------------------------------------------------------------------------
# Text handling
# ---------------------------------------------------------------------------------------------
def test_normalize_text():
    assert normalize_text("Hello, THIS call is—recorded!") == "hello this call is recorded"
    assert normalize_text("You’re 'welcome' f***") == "you're welcome f***"


def test_runs_split_at_long_gaps_and_turn_changes():
    segs = [
        seg("agent", 0.0, "one two three"),
        seg("agent", 1.5, "four five"),  # continues the same turn
        seg("customer", 3.0, "yes"),
        seg("agent", 3.6, "six seven"),  # after the customer's reply: a new run
        seg("agent", 10.0, "eight"),  # after 5 s of silence: a new run
    ]
    runs = [r for r in build_runs(segs) if r.role == "agent"]
    assert [r.text(0, len(r.tokens)) for r in runs] == [
        "one two three four five",
        "six seven",
        "eight",
    ]
    assert runs[0].segments == [(0, 3), (3, 5)]


def test_candidate_spans_cover_segments_windows_and_tail():
    run = build_runs([seg("agent", 0.0, " ".join(f"w{i}" for i in range(11)))])[0]
    spans = candidate_spans(run, [6], 4)
    assert (0, 11) in spans  # the whole segment
    assert {(0, 6), (4, 10), (5, 11)} <= set(spans)  # windows plus the last words


def test_words_without_timestamps_are_spread_over_the_segment():
    s = seg("agent", 10.0, "please note this call is recorded", words=False)
    s = s.model_copy(update={"end": 16.0})
    r = run1({"id": "d", "type": "phrase", "patterns": ["call is recorded"]}, [s])
    assert r.passed and r.evidence[0].start == 13.0


# ---------------------------------------------------------------------------------------------
# Phrase checks
# ---------------------------------------------------------------------------------------------
def test_phrase_require_case_punctuation_and_evidence_times():
    segs = [seg("customer", 0.0, "hi"), seg("agent", 2.0, "Well, Thank-you for CALLING Acme.")]
    check = {"id": "g", "type": "phrase", "role": "agent", "keywords": ["thank you for calling"]}
    r = run1(check, segs)
    assert r.passed is True and r.score == 1.0
    assert r.evidence[0].role == "agent"
    assert (r.evidence[0].start, r.evidence[0].end) == (2.4, 3.52)
    assert r.evidence[0].text == "Thank-you for CALLING"
    assert "at 2.4 s" in r.detail
    # The customer's words do not count for an agent check.
    assert run1(check | {"role": "customer"}, segs).passed is False


def test_phrase_word_boundaries_and_apostrophes():
    check = {"id": "f", "type": "phrase", "keywords": ["crap", "you're welcome"]}
    assert run1(check, [seg("agent", 0, "we scrap the old plan")]).passed is False
    assert run1(check, [seg("agent", 0, "oh crap sorry")]).passed is True
    assert run1(check, [seg("agent", 0, "youre welcome")]).passed is True
    pat = {"id": "p", "type": "phrase", "patterns": [r"\bcall(s)? (is|are) recorded\b"]}
    assert run1(pat, [seg("agent", 0, "All CALLS are recorded.")]).passed is True


def test_phrase_forbid_reports_every_hit():
    check = {"id": "f", "type": "phrase", "mode": "forbid", "role": "agent", "keywords": ["damn"]}
    segs = [seg("agent", 0, "damn it"), seg("customer", 3, "damn"), seg("agent", 6, "well damn")]
    r = run1(check, segs)
    assert r.passed is False and r.score == 0.0
    assert [e.start for e in r.evidence] == [0.0, 6.4]
    assert run1(check, [seg("agent", 0, "all good here")]).passed is True


def test_phrase_found_across_two_segments_of_one_turn():
    segs = [seg("agent", 0.0, "just so you know this call"), seg("agent", 2.6, "is recorded")]
    r = run1({"id": "d", "type": "phrase", "patterns": ["call is recorded"]}, segs)
    assert r.passed and r.evidence[0].start == 2.0


# ---------------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------------
def test_resolve_window():
    assert resolve_window(None, 90.0) == (float("-inf"), float("inf"))
    assert resolve_window((0, 15), 90.0) == (0, 15)
    assert resolve_window((-30, 0), 90.0) == (60.0, 90.0)
    assert resolve_window((-30, -10), 90.0) == (60.0, 80.0)
    assert resolve_window((10, 0), 90.0) == (10, 90.0)
    assert resolve_window((-30, 0), 20.0) == (0.0, 20.0)  # shorter than the window


def test_evidence_must_start_inside_the_window():
    check = {"id": "g", "type": "phrase", "window_s": [0, 15], "keywords": ["thanks for calling"]}
    assert run1(check, [seg("agent", 14.0, "thanks for calling")]).passed is True
    assert run1(check, [seg("agent", 16.0, "thanks for calling")]).passed is False
    # A segment that starts inside the window but reaches the phrase after it does not count.
    late = seg("agent", 12.0, "hello there one moment please while i look thanks for calling")
    assert late.words[8].start > 15 and late.words[8].word == " thanks"
    assert run1(check, [late]).passed is False
    # A segment that starts before the window but says the phrase inside it counts.
    closing = {"id": "c", "type": "phrase", "window_s": [-30, 0], "keywords": ["goodbye"]}
    long_turn = seg("agent", 58.0, "ok so that is all sorted then goodbye")
    assert run1(closing, [long_turn], duration_s=90.0).passed is True
    assert run1(closing, [seg("agent", 58.0, "goodbye")], duration_s=90.0).passed is False


def test_negative_window_counts_back_from_the_end():
    check = {"id": "c", "type": "phrase", "window_s": [-30, -10], "keywords": ["bye"]}
    assert run1(check, [seg("agent", 75.0, "bye")], duration_s=100.0).passed is True
    assert run1(check, [seg("agent", 65.0, "bye")], duration_s=100.0).passed is False
    assert run1(check, [seg("agent", 95.0, "bye")], duration_s=100.0).passed is False
    assert run1(check, [seg("agent", 75.0, "bye")], duration_s=200.0).passed is False


# ---------------------------------------------------------------------------------------------
# Metric checks
# ---------------------------------------------------------------------------------------------
DEAD_AIR = {
    "id": "dead_air",
    "type": "metric",
    "role": "call",
    "metric": "call.longest_mutual_silence_s",
    "max": 5.0,
    "events": "call.mutual_silence",
}
OVERTALK = {
    "id": "overtalk",
    "type": "metric",
    "role": "agent",
    "metric": "agent.longest_overtalk_s",
    "below": 1.0,
    "events": "call.overtalk",
    "events_where": {"by": "agent"},
}


def _metrics(silence_s=7.2, overtalk_s=1.6, rate=150.0):
    agent_overtalk = (
        [{"start": 20.0, "end": 20.0 + overtalk_s, "by": "agent", "over": "customer"}]
        if overtalk_s is not None
        else []
    )
    return {
        "call": {
            "longest_mutual_silence_s": silence_s,
            "mutual_silence": [
                {"start": 10.0, "end": 12.0},
                {"start": 31.0, "end": 31.0 + silence_s},
            ],
            "overtalk": [
                {"start": 4.0, "end": 4.5, "by": "customer", "over": "agent", "duration_s": 0.5},
                *agent_overtalk,
                {"start": 40.0, "end": 41.5, "by": "customer", "over": "agent", "duration_s": 1.5},
            ],
        },
        "agent": {"longest_overtalk_s": overtalk_s, "speech_rate_wpm": rate},
        "customer": {"longest_overtalk_s": 1.5, "speech_rate_wpm": 140.0},
    }


def test_dead_air_fails_with_the_long_silence_as_evidence():
    r = run1(DEAD_AIR, [], _metrics(silence_s=7.2))
    assert r.passed is False and r.score == 0.0
    assert [(e.start, e.end, e.role) for e in r.evidence] == [(31.0, 38.2, "call")]
    assert r.detail == "longest mutual silence 7.2 s > 5.0 s at 31.0 s"
    ok = run1(DEAD_AIR, [], _metrics(silence_s=5.0))  # the limit itself is allowed
    assert ok.passed is True and ok.evidence == [] and "5.0 s" in ok.detail


def test_overtalk_counts_only_agent_intervals_and_fails_at_one_second():
    segs = [seg("agent", 19.6, "no no listen to me")]
    r = run1(OVERTALK, segs, _metrics(overtalk_s=1.6))
    assert r.passed is False
    assert [(e.start, e.role) for e in r.evidence] == [(20.0, "agent")]
    assert r.evidence[0].text == "no listen to me"
    assert "1.6 s >= 1.0 s at 20.0 s" in r.detail
    assert run1(OVERTALK, segs, _metrics(overtalk_s=1.0)).passed is False  # 1 s or more fails
    assert run1(OVERTALK, segs, _metrics(overtalk_s=0.99)).passed is True


def test_speech_rate_bounds_and_null_metrics():
    rate = {"id": "r", "type": "metric", "metric": "agent.speech_rate_wpm", "min": 100, "max": 190}
    assert run1(rate, [], _metrics(rate=150.0)).passed is True
    fast = run1(rate, [], _metrics(rate=212.4))
    assert fast.passed is False and fast.detail == "agent speech rate 212 wpm > 190 wpm"
    assert run1(rate, [], _metrics(rate=95.0)).detail.endswith("< 100 wpm")
    null = run1(rate, [], _metrics(rate=None))
    assert null.passed is None and null.score == 0.0 and "not available" in null.detail
    assert run1(rate, [], {"call": {}}).passed is None  # missing: not evaluated, logged


# ---------------------------------------------------------------------------------------------
# Combinations, call score, critical
# ---------------------------------------------------------------------------------------------
def _kw(cid: str, word: str, mode: str = "require") -> dict:
    return {"id": cid, "type": "phrase", "keywords": [word], "mode": mode}


@pytest.mark.parametrize(
    ("kind", "words", "expect"),
    [
        ("any", ["hello", "nothing"], True),
        ("any", ["nothing", "nada"], False),
        ("all", ["hello", "there"], True),
        ("all", ["hello", "nothing"], False),
        ("none", ["nothing", "nada"], True),
        ("none", ["nothing", "there"], False),
    ],
)
def test_combinations(kind, words, expect):
    check = {"id": "c", "type": kind, "checks": [_kw("a", words[0]), _kw("b", words[1])]}
    r = run1(check, [seg("agent", 0, "hello there")])
    assert r.passed is expect and r.score == float(expect)
    if kind == "none" and not expect:
        assert r.evidence[0].text == "there"


def test_combination_null_propagation_and_refs():
    null_metric = {"id": "n", "type": "metric", "metric": "agent.longest_overtalk_s", "below": 1}
    metrics = {"agent": {"longest_overtalk_s": None}}
    segs = [seg("agent", 0, "hello")]

    def outcome(kind, word):
        checks = [null_metric, _kw("k", word), {"id": "c", "type": kind, "checks": ["n", "k"]}]
        results, _, _ = evaluate(card_of(*checks), segs, metrics, 10.0, None)
        return results[2].passed

    assert outcome("any", "hello") is True and outcome("any", "bye") is None
    assert outcome("all", "bye") is False and outcome("all", "hello") is None
    assert outcome("none", "hello") is False and outcome("none", "bye") is None


def test_call_score_weights_nulls_and_critical():
    checks = [
        _kw("a", "hello") | {"weight": 2},
        _kw("b", "missing") | {"weight": 1},
        _kw("c", "there") | {"weight": 1, "critical": True},
        {"id": "n", "type": "metric", "metric": "agent.x_s", "max": 1, "weight": 5},
    ]
    segs = [seg("agent", 0, "hello there")]
    results, score, critical = evaluate(card_of(*checks), segs, {"agent": {"x_s": None}}, 5.0, None)
    assert [r.passed for r in results] == [True, False, True, None]
    assert score == 75.0 and critical is False  # 100 x (2 + 1) / 4; the null check is left out
    checks[1]["critical"] = True
    results, score, critical = evaluate(card_of(*checks), segs, {"agent": {"x_s": None}}, 5.0, None)
    assert score == 75.0 and critical is True  # a critical failure leaves the score alone
    _, score, _ = evaluate(card_of(checks[3]), segs, {"agent": {"x_s": None}}, 5.0, None)
    assert score == 100.0  # nothing evaluable
    thirds = [_kw("a", "hello"), _kw("b", "x"), _kw("c", "y")]
    assert evaluate(card_of(*thirds), segs, {}, 5.0, None)[1] == 33.3


def test_semantic_check_needs_an_encoder():
    sem = {"id": "s", "type": "semantic", "examples": ["hi"], "threshold": 0.5}
    with pytest.raises(ScorecardError, match="needs a sentence encoder"):
        run1(sem, [seg("agent", 0, "hello")])


# ---------------------------------------------------------------------------------------------
# Real encoder: semantic logic, default scorecard, paraphrase / negative sets
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder():
    from callqa.text.encoder import get_encoder

    return get_encoder("bundled")


def test_semantic_finds_a_phrase_buried_in_a_long_segment(encoder):
    check = {
        "id": "d",
        "type": "semantic",
        "role": "agent",
        "threshold": 0.55,
        "examples": ["please be aware this call may be recorded for quality and training"],
    }
    body = "ok so i have your order here it was shipped on monday from the warehouse"
    long_seg = seg("agent", 3.0, f"{body} and just so you know we record calls for training {body}")
    card = card_of(check)
    r = evaluate(card, [long_seg], {}, 60.0, encoder)[0][0]
    assert r.passed is True and 0.55 <= r.score <= 1.0
    assert "record calls" in r.evidence[0].text and r.evidence[0].start > 7.0
    assert "found" in r.detail and f"({r.score:.2f})" in r.detail
    whole = evaluate(card, [seg("agent", 3.0, f"{body} {body}")], {}, 60.0, encoder)[0][0]
    assert whole.passed is False and whole.evidence == [] and whole.score < 0.55
    # forbid: the same similarity now means a violation, with the span as evidence
    forbid = evaluate(card_of(check | {"mode": "forbid"}), [long_seg], {}, 60.0, encoder)[0][0]
    assert forbid.passed is False and forbid.evidence and forbid.score == r.score


def test_mono_overtalk_is_null_and_left_out_of_the_score(encoder):
    card = Scorecard.load(DEFAULT)
    segs = [
        seg("agent", 0.5, "thank you for calling northwind this is dana how can i help you"),
        seg("customer", 6.0, "hi i want to check my bill"),
        seg("agent", 9.0, "sure can you confirm your date of birth"),
        seg("customer", 12.0, "yes it's the fourth of may"),
        seg("agent", 15.0, "thanks please note this call is recorded for quality"),
        seg("agent", 40.0, "is there anything else i can help with have a great day"),
    ]
    metrics = _metrics(silence_s=2.0, overtalk_s=None, rate=150.0)
    metrics["call"]["overtalk"] = []
    results, score, critical = evaluate(card, segs, metrics, 46.0, encoder)
    by_id = {r.id: r for r in results}
    assert [r.id for r in results] == CHECK_IDS
    assert by_id["overtalk"].passed is None
    assert all(r.passed is True for r in results if r.id != "overtalk")
    assert score == 100.0 and critical is False
    # One failure among the seven evaluated checks: the null check does not dilute it.
    metrics["agent"]["speech_rate_wpm"] = 230.0
    _, score, _ = evaluate(card, segs, metrics, 46.0, encoder)
    total = sum(c.weight for c in card.checks if c.id != "overtalk")
    assert score == round(100 * (total - 1) / total, 1)


# Paraphrases written for these tests; none is an example in the scorecard (checked below).
# CALIBRATION sets were used to choose examples, patterns and thresholds; HELD_OUT sets were
# written before tuning and looked at once (that look led to greeting examples without
# department names, which had matched body talk such as "the billing team").
CALIBRATION = {
    "greeting": [
        "you're speaking with dana at northwind what can i do for you",
        "hi this is marcus with contoso bank how can i help",
        "good evening thanks for giving us a call my name's rachel",
        "hello you've come through to the returns team this is omar",
        "morning fabrikam insurance ellie here how may i help you today",
        "hey there thank you for reaching out to globex this is tom",
        "hi you're through to the technical support line my name is ana how can i help",
        "good afternoon northwind energy dana speaking",
        "thank you for contacting woodgrove this is li how can i be of assistance",
        "hello welcome to the contoso helpdesk im sara",
        "hi thanks for calling in my name is jake whats going on today",
        "hello and thanks for calling tailspin travel you're talking to nina",
    ],
    "identity_verification": [
        "can you confirm your date of birth for me",
        "could you tell me the last four of your card",
        "and whats the postcode on the account",
        "before i can look into that i need to make sure im speaking to the account holder",
        "can you just confirm your first and last name and the address we have for you",
        "could i get the zip code associated with the account please",
        "whats your membership number",
        "for data protection can you confirm a few details for me",
        "can you give me the answer to your secret question",
        "i'll need to verify who i'm talking to first",
        "can you read me the six digit code we just texted you",
        "what phone number is registered on the account",
    ],
    "recording_disclosure": [
        "just so you know this conversation is being recorded for quality",
        "calls to this line are recorded",
        "i have to tell you this call is monitored for training",
        "before we start please note that the call is recorded",
        "this call may be listened to for coaching and quality purposes",
        "we record all calls for security and training",
        "heads up that our conversation today is being recorded",
        "this phone call is being taped for quality control",
        "your call may be monitored or recorded",
        "i should mention we're recording this call",
    ],
    "closing": [
        "is there anything else i can help with today have a great day",
        "anything more i can do for you today",
        "alright you're all set thanks for calling bye bye",
        "ok thank you so much take care now",
        "perfect is there anything else you need alright have a lovely evening",
        "thanks again for calling us have a good one",
        "great well i hope the rest of your day goes well goodbye",
        "no problem at all happy to help bye",
        "can i help with anything else at all",
        "you're welcome cheers have a nice weekend",
    ],
    "forbidden_language": [
        "honestly thats not my problem",
        "are you an idiot",
        "look i dont care about your refund",
        "stop calling us and wasting my time",
        "you're too dumb to understand this",
        "that's your fault you should have read the terms",
        "just shut up for a second",
        "i'm not going to explain it again listen properly",
        "go figure it out on your own",
        "what a stupid question",
        "i couldn't care less",
        "oh for god's sake you people are useless",
    ],
}
HELD_OUT = {
    "greeting": [
        "hello thank you for calling the acme pharmacy this is becky how can i help you",
        "good morning and welcome to city water services my name is raj",
        "hi you've reached the northwind billing team you're speaking with dana",
        "hello northwind customer support this is dana speaking how can i help",
        "hi there its chris from the helpdesk what can i do for you today",
        "thanks for calling sunrise telecom this is mia",
        "good afternoon you're through to accounts how can i help",
        "hello you are speaking to jo at contoso what can i help you with",
        "thank you for your call my name is peter how may i help",
        "hey good morning thanks for calling bluebird this is ann speaking",
    ],
    "identity_verification": [
        "can you confirm your date of birth please",
        "could you please give me the last four digits of the card",
        "just to confirm whats the postcode on the account",
        "before we continue can i take your full name and the first line of your address",
        "i'll just need to run through some security checks with you",
        "can you confirm the account number for me please",
        "whats the billing zip code on the account",
        "can you verify the last four of your social",
        "so i can access the account can you tell me your date of birth",
        "could you confirm the phone number we have on file",
    ],
    "recording_disclosure": [
        "please be advised this call is recorded",
        "this call will be recorded for training and quality purposes",
        "i need to let you know our calls are recorded",
        "for your information this call may be monitored",
        "just a quick note that we are recording this call for quality",
        "calls are recorded to help us improve our service",
        "this conversation may be recorded and used for training",
    ],
    "closing": [
        "is there anything else you need from me today",
        "thank you for calling have a good afternoon",
        "alright thanks for your time bye now",
        "if there's nothing else thank you and goodbye",
        "ok you're all sorted anything else i can do for you",
        "perfect well thanks for calling and have a lovely day",
        "that's everything then take care bye",
    ],
    "forbidden_language": [
        "that's not my problem sir",
        "i don't care just pay the bill",
        "are you deaf i already told you",
        "you're being an idiot about this",
        "this is a stupid complaint",
        "shut up and let me finish",
        "i can't be bothered to look that up for you",
        "it's not my job to fix your mess",
    ],
}
# Casual openings and loose wordings (written for this test, after the two sets above had
# been used to tune the scorecard; they caught its gaps: bare salutations, "kept", "captured").
COLLOQUIAL = {
    "greeting": [
        "hey there you've got marcus at northwind whats going on today",
        "morning northwind support dana here",
        "hiya its the billing team hows it going what do you need",
        "good day northwind energy sam speaking",
        "hello there lovely to hear from you what can we sort out",
        "afternoon its priya at the service desk",
        "hi it's jo over at contoso what's up",
    ],
    "identity_verification": [
        "before i pull up the account can you spell your surname and give me the billing zip",
        "i need to confirm a couple of things for security whats the email address on the account",
        "just to make sure it's really you what are the last digits of your card",
        "can you tell me the year you were born and your house number",
    ],
    "recording_disclosure": [
        "heads up we're recording this line so we can train our staff",
        "this conversation may be kept for quality purposes",
        "just so you're aware everything we say is being captured for training",
        "our calls are taped for compliance",
        "a recording of this conversation is being made",
        "we keep an audio copy of every call",
    ],
    "closing": [
        "alright you're all set anything more i can do cheers bye",
        "thanks for your patience have a good one",
        "okay that's everything bye bye now take it easy",
    ],
    "forbidden_language": [
        "honestly that's your problem not mine",
        "look i can't be bothered just google it",
        "stop whining and listen",
        "what a stupid question",
    ],
}
# Ordinary agent body talk: billing, refunds, delivery, tech support.
BODY = [
    "let me pull up your account one moment",
    "i can see the refund was processed on the fifth of march",
    "it usually takes three to five working days to reach your bank",
    "your parcel left our warehouse yesterday and should arrive on thursday",
    "i've applied a ten percent discount to your next bill",
    "your current balance is forty two dollars and fifteen cents",
    "the late fee was added because the payment came in after the due date",
    "can you try restarting the router and tell me if the light turns green",
    "i'm going to escalate this to our technical team",
    "i'll put you on a brief hold while i check with my supervisor",
    "it looks like the direct debit failed last month",
    "we can send a replacement out free of charge",
    "i've updated the delivery address to the new flat",
    "you should receive a confirmation email within the hour",
    "sorry about the wait the system is a bit slow today",
    "i understand that's frustrating let me see what i can do",
    "unfortunately we can't refund opened items but we can offer store credit",
    "okay the order number is four four seven nine two",
    "the engineer can come out on monday between eight and twelve",
    "i'm sorry to hear the item arrived damaged",
    "the invoice was sent to the old email address",
    "so i've cancelled the duplicate payment for you",
    "okay and which card would you like to use for this payment",
    "let me just read that back to make sure i have it right",
    "the payment reference is the invoice number at the top of the page",
    "your bill went up because the promotional discount ended in may",
    "the refund has been approved and should show up in about a week",
    "we can reschedule the delivery for saturday if that works better",
    "i've added a note to escalate this with the billing team",
    "let me transfer you to our returns department",
    "ok so i've reset your password you should get a text shortly",
    "the parcel was left with your neighbour at number twelve",
    "can you tell me what error message you're seeing on the screen",
    "i'm just waiting for the page to load bear with me",
]
# Greetings and closings both thank the caller; each is judged in its own window.
NOT_NEGATIVE_FOR = {"greeting": {"closing"}, "closing": {"greeting"}}


def _scorecard_examples() -> set[str]:
    """Every semantic example sentence of the default scorecard, normalised."""
    card = Scorecard.load(DEFAULT)
    return {
        normalize_text(e)
        for c in card.by_id.values()
        if isinstance(c, SemanticCheck)
        for e in c.examples
    }


def test_paraphrase_sets_are_not_scorecard_examples():
    examples = _scorecard_examples()
    for sets in (CALIBRATION, HELD_OUT, COLLOQUIAL):
        for texts in sets.values():
            assert not examples & {normalize_text(t) for t in texts}
    assert not examples & {normalize_text(t) for t in BODY}


def _call(text: str) -> tuple[list[Segment], float]:
    """One agent turn 1 s into a 20 s call: inside both the greeting and the closing window."""
    return [seg("customer", 0.0, "hi"), seg("agent", 1.0, text, wps=3.0)], 20.0


def _passed(card: Scorecard, encoder, text: str) -> dict[str, bool]:
    segs, duration_s = _call(text)
    results, _, _ = evaluate(card, segs, {}, duration_s, encoder)
    return {r.id: r.passed for r in results}


@pytest.mark.slow
@pytest.mark.parametrize("set_name", ["calibration", "held_out", "colloquial"])
def test_semantic_checks_on_paraphrases_and_body_talk(encoder, set_name):
    card = Scorecard.load(DEFAULT)
    sets = {"calibration": CALIBRATION, "held_out": HELD_OUT, "colloquial": COLLOQUIAL}[set_name]
    rng = random.Random(0)
    # Positive class = the behaviour is present (for forbidden_language: the violation).
    found = {cid: lambda p, cid=cid: p[cid] is (cid != "forbidden_language") for cid in sets}
    positives = {
        cid: texts + [" ".join([rng.choice(BODY), t, rng.choice(BODY)]) for t in texts]
        for cid, texts in sets.items()
    }
    negatives = BODY + [" ".join(rng.sample(BODY, 6)) for _ in range(6)]
    neg_results = [_passed(card, encoder, t) for t in negatives]
    other = {cid: [(c, t) for c, ts in sets.items() if c != cid for t in ts] for cid in sets}
    lines = []
    for cid, texts in positives.items():
        tp = sum(found[cid](_passed(card, encoder, t)) for t in texts)
        fp = sum(found[cid](p) for p in neg_results)
        n_neg = len(neg_results)
        for c, t in other[cid]:
            if c not in NOT_NEGATIVE_FOR.get(cid, set()):
                fp += found[cid](_passed(card, encoder, t))
                n_neg += 1
        recall, precision = tp / len(texts), tp / max(tp + fp, 1)
        lines.append(f"{cid}: recall {tp}/{len(texts)}, false positives {fp}/{n_neg}")
        assert recall >= 0.85, lines[-1]
        assert precision >= 0.95, lines[-1]
    logger.info("%s set: %s", set_name, "; ".join(lines))


def test_body_only_call_fails_every_required_phrase(encoder):
    """A whole call of body talk: nothing required is said, nothing forbidden either."""
    card = Scorecard.load(DEFAULT)
    rng = random.Random(3)
    segs, t = [], 0.5
    for i, text in enumerate(rng.sample(BODY, 16)):
        segs.append(seg("agent" if i % 2 == 0 else "customer", t, text))
        t = segs[-1].end + 0.6
    results, _, critical = evaluate(card, segs, {}, t + 1.0, encoder)
    by_id = {r.id: r for r in results}
    for cid in ("greeting", "identity_verification", "recording_disclosure", "closing"):
        assert by_id[cid].passed is False, by_id[cid].detail
        assert by_id[cid].evidence == []
    assert by_id["forbidden_language"].passed is True, by_id["forbidden_language"].detail
    assert critical is True


# Real-world script phrasings and ASR-style errors (misheard words, numerals, split compounds),
# written for these tests from call-center scripts, not from any synthetic phrase bank.
ASR_STYLE = {
    "identity_verification": [
        "for data protection purposes can i take your full name please",
        "can you confirm the post code on the account",
        "whats your date a birth please",
        "could you read me the last 4 digits of your card",
        "can i just grab the last three of your social security number",
        "i need to verify who i'm speaking with before i go into the account",
        "so first i'll need your account number",
        "can i have your customer id please",
        "are you the account holder i just need to confirm a few details",
        "can you verify your billing address for me",
        "what's the phone number on the account",
        "we'll just need to go through security questions first",
        "what's the zipcode for the account",
        "could you give me the last four numbers on the card linked to this account",
        "let me just verify some information can i get your birth date",
    ],
    "closing": [
        "thanks for choosing northwind have a great rest of your day",
        "okay that's everything thank you bye bye",
        "alright you're all sorted cheers bye now",
        "is there anything else i could help you with",
        "thank you for your business have a wonderful evening",
        "it's been a pleasure talking to you take care",
        "great thanks very much speak soon",
        "lovely thanks for your time goodbye",
        "have a really good weekend",
        "will that be all for today",
    ],
}
# Negatives: body talk that shares words with the patterns (confirm, number, details, bye,
# identity) without verifying anyone or closing the call.
ASR_STYLE_NEGATIVE = {
    "identity_verification": [
        "thank you for choosing identity solutions",
        "the right identity for your brand is what we sell",
        "i'll send you an email to confirm the booking",
        "the order number is on the confirmation email",
        "let me check the details of your order",
        "your new card number will be sent by post",
        "what's a good phone number to reach you on for the engineer",
        "can you confirm the details of the fault for me",
        "the last four days of the month are the busiest",
        "i've updated the address on the delivery",
        "calls may be recorded for security purposes",
        "okay i've reset your password you should get a text",
    ],
    "closing": [
        "let me pull up your account bye the way it's the second one",
        "i'll put you on hold one moment",
        "the refund will reach your account in a few days",
        "can you spell your surname for me",
        "sorry the system is slow today",
        "i'll transfer you to billing now",
    ],
}


def test_asr_style_sets_are_not_scorecard_examples():
    examples = _scorecard_examples()
    for sets in (ASR_STYLE, ASR_STYLE_NEGATIVE):
        for texts in sets.values():
            assert not examples & {normalize_text(t) for t in texts}


@pytest.mark.slow
def test_default_scorecard_on_script_phrasings_and_asr_errors(encoder):
    card = Scorecard.load(DEFAULT)
    lines = []
    for cid, texts in ASR_STYLE.items():
        misses = [t for t in texts if _passed(card, encoder, t)[cid] is not True]
        negs = ASR_STYLE_NEGATIVE[cid] + BODY
        fps = [t for t in negs if _passed(card, encoder, t)[cid] is True]
        tp = len(texts) - len(misses)
        lines.append(f"{cid}: recall {tp}/{len(texts)} {misses}; false positives {fps}")
        assert tp / len(texts) >= 0.9, lines[-1]
        assert tp / max(tp + len(fps), 1) >= 0.95 and len(fps) <= 1, lines[-1]
    logger.info("script / ASR sets: %s", "; ".join(lines))


def test_semantic_anchors_gate_candidate_spans(encoder):
    check = {
        "id": "v",
        "type": "semantic",
        "role": "agent",
        "threshold": 0.3,
        "examples": ["before we go any further i need to verify your identity"],
    }
    segs = [seg("agent", 1.0, "thank you for choosing the right identity")]
    free = evaluate(card_of(check), segs, {}, 20.0, encoder)[0][0]
    assert free.passed is True
    gated = card_of(check | {"anchors": [r"\b(verify|birth|account)\b"]})
    r = evaluate(gated, segs, {}, 20.0, encoder)[0][0]
    assert r.passed is False and r.evidence == [] and "no speech" in r.detail
    with pytest.raises(ScorecardError, match="anchor"):
        card_of(check | {"anchors": ["("]})
