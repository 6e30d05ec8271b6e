"""Suggestions made to fit each channel, and typed answers mapped back."""

from __future__ import annotations

import pytest

from channels.base import Capabilities, Suggestion
from channels.buttons import FittedOptions, cut_label, fit_suggestions, match_answer


@pytest.mark.parametrize(
    ("label", "limit", "shown"),
    [
        ("Yes", 20, "Yes"),
        ("Talk to a human agent now", 20, "Talk to a human…"),
        ("Supercalifragilistic expialidocious", 20, "Supercalifragilisti…"),
        ("Pay, then ship", 6, "Pay…"),
        ("👍🏽👍🏽👍🏽", 4, "👍🏽…"),
        ("  spaced   out  ", 20, "spaced out"),
        ("anything at all", 0, "anything at all"),
    ],
)
def test_cut_label(label: str, limit: int, shown: str) -> None:
    assert cut_label(label, limit) == shown
    assert limit == 0 or len(shown) <= limit


def _options(count: int, label: str = "Option") -> list[Suggestion]:
    return [Suggestion(key=f"k{i}", label=f"{label} {i}") for i in range(1, count + 1)]


WHATSAPP = Capabilities(
    max_text_length=4096,
    max_buttons=3,
    max_button_label=20,
    max_list_rows=10,
    max_list_row_title=24,
)
BUTTONS_ONLY = Capabilities(max_text_length=4096, max_buttons=2, max_button_label=10)
SMS = Capabilities(max_text_length=1600)


@pytest.mark.parametrize(
    ("capabilities", "count", "buttons", "as_list", "lines"),
    [
        (WHATSAPP, 0, 0, False, ()),
        (WHATSAPP, 3, 3, False, ()),
        (WHATSAPP, 4, 4, True, ()),
        (WHATSAPP, 10, 10, True, ()),
        (WHATSAPP, 12, 10, True, ("11. Option 11", "12. Option 12")),
        (BUTTONS_ONLY, 3, 2, False, ("3. Option 3",)),
        (SMS, 2, 0, False, ("1. Option 1", "2. Option 2")),
    ],
)
def test_fit_suggestions(
    capabilities: Capabilities, count: int, buttons: int, as_list: bool, lines: tuple[str, ...]
) -> None:
    fitted = fit_suggestions(_options(count), capabilities)
    assert len(fitted.buttons) == buttons
    assert fitted.as_list is as_list
    assert fitted.text_lines == lines
    # Keys are what comes back: kept whole, in order.
    assert [b.key for b in fitted.buttons] == [f"k{i}" for i in range(1, buttons + 1)]


def test_labels_are_cut_to_each_kind_of_limit() -> None:
    long = [Suggestion("a", "Schedule a visit next week"), Suggestion("b", "No")]
    assert fit_suggestions(long, WHATSAPP).buttons[0].label == "Schedule a visit…"
    many = long + _options(3, "Something with a very long title")
    rows = fit_suggestions(many, WHATSAPP).buttons
    assert all(len(r.label) <= 24 for r in rows)
    assert rows[0].label == "Schedule a visit next…"


def test_no_buttons_means_text() -> None:
    assert fit_suggestions(_options(2), SMS) == FittedOptions(
        text_lines=("1. Option 1", "2. Option 2")
    )


OFFERED = [
    Suggestion("yes", "Yes, please"),
    Suggestion("no", "No"),
    Suggestion("agent", "Talk to a human agent now"),
]


@pytest.mark.parametrize(
    ("answer", "key"),
    [
        ("2", "no"),
        (" 2. ", "no"),
        ("#3", "agent"),
        ("(1)", None),
        ("4", None),
        ("yes", "yes"),
        ("YES, PLEASE!", "yes"),
        ("yes,   please", "yes"),
        ("no", "no"),
        ("Talk to a human…", "agent"),
        ("Talk", None),
        ("maybe", None),
        ("", None),
    ],
)
def test_match_answer(answer: str, key: str | None) -> None:
    assert match_answer(answer, OFFERED) == key
