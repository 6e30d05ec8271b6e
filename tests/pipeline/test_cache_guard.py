"""The semantic cache's guard, as a table: question pairs that must never share an answer (and
why), pairs that should.  With the packaged local model installed, the same table is read
the way the cache reads it: embedding cosine against the 0.95 threshold, then the guard."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.cache_guard import Difference, difference, exact_form, folded, may_share
from pipeline.kb.local_embedder import load_local_embedder
from pipeline.llm_cache import DEFAULT_THRESHOLD

MUST_NOT_SHARE: list[tuple[str, str, Difference]] = [
    # negation
    ("can I cancel my order", "can I not cancel my order", "negation"),
    ("Can I cancel my order?", "Can't I cancel my order?", "negation"),
    ("I want to cancel my subscription", "I don't want to cancel my subscription", "negation"),
    ("Does the hotel allow pets?", "Does the hotel allow no pets?", "negation"),
    ("Is breakfast included with the room?", "Is breakfast included without the room?", "negation"),
    ("Is it ever open on holidays?", "Is it never open on holidays?", "negation"),
    ("Posso cancelar meu pedido?", "Não posso cancelar meu pedido?", "negation"),
    ("¿Puedo pagar con tarjeta?", "¿No puedo pagar con tarjeta?", "negation"),
    # numbers
    ("book a table for 2 people", "book a table for 3 people", "numbers"),
    ("book a table for two people", "book a table for three people", "numbers"),
    ("book a table for two people", "book a table for 3 people", "numbers"),
    ("What is the price of the iPhone 15?", "What is the price of the iPhone 14?", "numbers"),
    ("Can I return an item after 30 days?", "Can I return an item after 60 days?", "numbers"),
    ("Is the 10:30 train on time?", "Is the 11:30 train on time?", "numbers"),
    ("Is shipping free over $50?", "Is shipping free over $500?", "numbers"),
    ("What happens on the first day?", "What happens on the second day?", "numbers"),
    # names
    ("flights to Paris", "flights to Rome", "names"),
    ("Do you ship to Canada?", "Do you ship to Mexico?", "names"),
    ("Do you ship to the US?", "Do you ship to the us?", "names"),
    ("Who is John Smith?", "Who is John Smyth?", "names"),
    ("Is the store open on Sunday?", "Is the store open on Monday?", "names"),
    ("How do I install it on Windows?", "How do I install it on Linux?", "names"),
    # other words: antonyms, pronouns, prepositions, tense, order
    ("Is it safe to take ibuprofen?", "Is it unsafe to take ibuprofen?", "wording"),
    ("Is the store open on sunday?", "Is the store closed on sunday?", "wording"),
    ("How do I enable notifications?", "How do I disable notifications?", "wording"),
    ("What time does the store open?", "What time does the store close?", "wording"),
    ("flights to paris", "flights to rome", "wording"),  # names in lower case are words
    ("Can I cancel my order?", "Can you cancel my order?", "wording"),
    ("what is my balance", "what is your balance", "wording"),
    ("book a table for 2", "book a table at 2", "wording"),
    ("When did my order ship?", "When will my order ship?", "wording"),
    (
        "transfer money from savings to checking",
        "transfer money from checking to savings",
        "wording",
    ),
    ("Is it bigger than the old model?", "Is it smaller than the old model?", "wording"),
]

SHOULD_SHARE: list[tuple[str, str]] = [
    ("What are your opening hours?", "what are your opening hours"),
    ("How do I reset my password?", "How can I reset my password?"),
    ("how do I reset my password", "How to reset my password?"),
    ("What's your refund policy?", "What is your refund policy?"),
    ("Do you sell gift cards?", "Do you sell a gift card?"),
    ("Book a table for two people", "book a table for 2 people"),
    ("Do you ship to Canada?", "do you ship to canada"),
    ("Hi, what are your opening hours?", "What are your opening hours please?"),
    ("Can you tell me what your opening hours are?", "What your opening hours are?"),
    ("I don't have an account, how do I sign up?", "I do not have an account, how do I sign up?"),
    ("How do I configure the e-mail channel?", "how can I configure the email channel"),
    ("What is the capital of France?", "what's the capital of france?"),
    ("Which plan costs 1,000 dollars?", "which plan costs 1000 dollars"),
]


@pytest.mark.parametrize(
    ("first", "second", "why"), MUST_NOT_SHARE, ids=[f"{w}:{a}" for a, _, w in MUST_NOT_SHARE]
)
def test_questions_of_other_meaning_never_share_an_answer(
    first: str, second: str, why: Difference
) -> None:
    assert difference(first, second) == why
    assert difference(second, first) == why  # either one may be the cached one
    assert not may_share(first, second)


@pytest.mark.parametrize(("first", "second"), SHOULD_SHARE, ids=[a for a, _ in SHOULD_SHARE])
def test_the_same_question_worded_a_little_otherwise_may_share(first: str, second: str) -> None:
    assert difference(first, second) is None
    assert difference(second, first) is None


def test_the_exact_tier_ignores_case_spacing_and_final_punctuation_but_not_capitals() -> None:
    assert exact_form("What are your  opening hours?") == exact_form("what are your opening hours")
    assert exact_form("Hours?!") == exact_form(" hours ")
    assert exact_form("Do you ship to the US?") != exact_form("Do you ship to the us?")
    assert exact_form("Can I cancel?") != exact_form("Can I not cancel?")
    # Unicode forms, spaces and typed apostrophes too
    assert folded("\uff37hat ARE\u00a0you\u2019re?") == "what are you're"


@pytest.fixture(scope="module")
def cosine() -> object:
    embedder = load_local_embedder()
    if embedder is None:
        pytest.skip("the local embedding model (the local-model extra) is not installed")

    def similarity(a: str, b: str) -> float:
        va, vb = embedder.embed_blocking([folded(a), folded(b)])
        return float(np.dot(va, vb))

    return similarity


def test_the_guard_is_what_keeps_close_embeddings_apart(cosine: object) -> None:
    """Many pairs of opposite meaning are above the threshold: the embedding alone would
    share their answers; many paraphrases are above it too, and the guard lets them share."""
    assert callable(cosine)
    above = [(a, b) for a, b, _ in MUST_NOT_SHARE if cosine(a, b) >= DEFAULT_THRESHOLD]
    assert len(above) >= 5, above  # e.g. "cancel" / "not cancel" at 0.98
    assert all(not may_share(a, b) for a, b in above)
    shared = [(a, b) for a, b in SHOULD_SHARE if cosine(a, b) >= DEFAULT_THRESHOLD]
    assert len(shared) >= len(SHOULD_SHARE) - 2, set(SHOULD_SHARE) - set(shared)
