"""callqa.asr.roles: agent identification through the scorer passed in (the real MiniLM
sentence encoder behind the scorecard's scorer), role assignment and frame accuracy."""

from __future__ import annotations

import pytest

from callqa.asr.roles import assign_roles, frame_accuracy, pick_agent, turn_texts_from_words

# Written for these tests; none is a copy of the default scorecard's examples.
AGENT_EXAMPLES = [
    "thank you for calling acme support, my name is sam, how can i help you today",
    "good morning, you've reached the billing team, this is alex speaking",
    "is there anything else i can help you with today",
    "thanks for calling, have a great day, goodbye",
]


@pytest.fixture(scope="module")
def agent_likeness():
    """The scorer the Scorer passes down, built from a scorecard with these examples."""
    from callqa.qa.scorecard import Scorecard
    from callqa.text.encoder import get_encoder

    check = {"id": "greeting", "type": "semantic", "role": "agent", "agent_marker": True}
    card = Scorecard.from_dict(
        {"checks": [{**check, "examples": AGENT_EXAMPLES, "threshold": 0.5}]}
    )
    return card.agent_likeness(get_encoder("bundled"))


def test_pick_agent_by_greeting_when_the_customer_speaks_first(agent_likeness):
    turns = {
        0: [(0.2, "Hello?"), (9.0, "Yes, my card was declined at the shop this morning.")],
        1: [
            (1.5, "Hi there, thanks for phoning Northwind Bank, Dana speaking. What can I do?"),
            (14.0, "I can see the block, I've removed it now."),
            (30.0, "Anything more I can do for you today? Thank you for calling, bye now."),
        ],
    }
    assert pick_agent(turns, agent_likeness) == 1


def test_pick_agent_falls_back_to_the_first_speaker(agent_likeness):
    turns = {
        1: [(0.5, "The weather is lovely at the lake this week."), (8.0, "We went fishing.")],
        0: [(3.0, "Did you catch anything big at all?"), (11.0, "Sounds like a great trip.")],
    }
    assert pick_agent(turns, agent_likeness) == 1
    assert pick_agent(turns, None) == 1
    assert pick_agent({3: [(2.0, "Hello?")]}, agent_likeness) == 3
    with pytest.raises(ValueError):
        pick_agent({}, agent_likeness)


def test_pick_agent_scores_each_speakers_sentences_with_the_callable():
    turns = {
        0: [(0.0, "Good morning, how are you doing today?")],
        1: [(2.0, "I am calling about my broken router. It stopped working.")],
    }
    seen = []

    def likeness(sentences: list[str]) -> float:
        seen.append(sentences)
        return 0.9 if any("router" in s for s in sentences) else 0.1

    assert pick_agent(turns, likeness) == 1
    # Lower-cased sentences without punctuation, one list per speaker.
    assert sorted(seen) == [
        ["good morning how are you doing today"],
        ["i am calling about my broken router", "it stopped working"],
    ]
    # A margin under min_margin keeps the first speaker.
    assert pick_agent(turns, lambda ss: 0.5 + 0.005 * ("router" in " ".join(ss))) == 0


def test_assign_roles_and_role_accuracy():
    turns = [(0.0, 2.0, 0), (2.5, 4.0, 1), (4.0, 6.0, 0)]
    roles = assign_roles(turns, agent_speaker=1)
    assert [r for _, _, r in roles] == ["customer", "agent", "customer"]
    reference = [(0.0, 2.0, "customer"), (2.5, 4.0, "agent"), (4.0, 6.0, "customer")]
    assert frame_accuracy(reference, roles, best_mapping=False)[0] == pytest.approx(1.0)
    swapped = assign_roles(turns, agent_speaker=0)
    assert frame_accuracy(reference, swapped, best_mapping=False)[0] == pytest.approx(0.0)
    # Speaker numbers are arbitrary: the best mapping makes the swap irrelevant.
    assert frame_accuracy(reference, swapped)[0] == pytest.approx(1.0)


def test_frame_accuracy_counts_missed_speech_and_skips_overlap():
    reference = [(0.0, 1.0, "a"), (1.0, 2.0, "b"), (1.5, 3.0, "a")]
    # Scored frames: 0-1.5 s and 2-3 s (1.5-2 s has two speakers). 0-1 right, 1-1.5 right,
    # 2-3 unlabelled (missed) -> 1.5 of 2.5 s.
    accuracy, labelled = frame_accuracy(reference, [(0.0, 1.0, 7), (1.0, 2.0, 9)])
    assert accuracy == pytest.approx(0.6, abs=0.01)
    assert labelled == pytest.approx(0.6, abs=0.01)


def test_turn_texts_from_words():
    turns = [(0.0, 2.0, 0), (2.0, 5.0, 1), (6.0, 8.0, 0)]
    words = [(0.1, 0.5, " hello"), (1.8, 2.3, " there"), (2.4, 2.9, " hi"), (5.2, 5.6, " yes")]
    assert turn_texts_from_words(turns, words) == {0: [(0.0, "hello")], 1: [(2.0, "there hi yes")]}
