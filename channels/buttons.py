"""A reply's suggestions, degraded to what a channel can show.

A provider refuses a message whose buttons break its limits, so options are
made to fit before sending: labels cut at a word edge, too many buttons turned
into a list, options beyond the list written into the text as numbered lines,
and every option written as text on a channel with no buttons at all. A user
who answers by typing (the number or the label) is mapped back by
:func:`match_answer`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from channels.base import Capabilities, Suggestion
from channels.splitting import grapheme_edges

ELLIPSIS = "…"


def cut_label(label: str, limit: int) -> str:
    """``label`` in at most ``limit`` characters: cut at a word edge when one is not
    too far back, with an ellipsis; ``limit`` 0 means no limit."""
    label = " ".join(label.split())
    if limit <= 0 or len(label) <= limit:
        return label
    if limit == 1:
        return ELLIPSIS
    room = limit - len(ELLIPSIS)
    # Never cut inside an emoji: the last edge between user-perceived characters.
    edges = [edge for edge in grapheme_edges(label, 0, len(label)) if edge <= room]
    head = label[: edges[-1]] if edges else ""
    space = head.rfind(" ")
    if space >= room // 2:
        head = head[:space]
    return head.rstrip(" ,;:-") + ELLIPSIS


@dataclass(frozen=True, slots=True)
class FittedOptions:
    """Suggestions as a channel can show them.

    ``buttons`` go on the message (as reply buttons, or as a list when
    ``as_list``); ``text_lines`` are the options that did not fit, numbered by
    their place among all the suggestions, to write at the end of the text.
    """

    buttons: tuple[Suggestion, ...] = ()
    as_list: bool = False
    text_lines: tuple[str, ...] = ()


def numbered_lines(suggestions: Sequence[Suggestion], *, first: int = 1) -> tuple[str, ...]:
    """Options written as text, ``"1. Yes"``, numbered from ``first``."""
    return tuple(
        f"{number}. {' '.join(s.label.split())}" for number, s in enumerate(suggestions, first)
    )


def fit_suggestions(suggestions: Sequence[Suggestion], capabilities: Capabilities) -> FittedOptions:
    """Degrade ``suggestions`` to the ``capabilities``' buttons and lists; keys are kept."""
    count = len(suggestions)
    if not count:
        return FittedOptions()
    max_buttons = capabilities.max_buttons
    if max_buttons > 0 and count <= max_buttons:
        return FittedOptions(buttons=_cut(suggestions, capabilities.max_button_label))
    rows = capabilities.max_list_rows
    if rows > 0:
        return FittedOptions(
            buttons=_cut(suggestions[:rows], capabilities.max_list_row_title),
            as_list=True,
            text_lines=numbered_lines(suggestions[rows:], first=rows + 1),
        )
    if max_buttons > 0:
        return FittedOptions(
            buttons=_cut(suggestions[:max_buttons], capabilities.max_button_label),
            text_lines=numbered_lines(suggestions[max_buttons:], first=max_buttons + 1),
        )
    return FittedOptions(text_lines=numbered_lines(suggestions))


def _cut(suggestions: Sequence[Suggestion], limit: int) -> tuple[Suggestion, ...]:
    return tuple(Suggestion(key=s.key, label=cut_label(s.label, limit)) for s in suggestions)


_NUMBER = re.compile(r"#?\s*(\d{1,3})\s*[.)]?")


def _normal(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" .!?;:")


def match_answer(answer: str, offered: Sequence[Suggestion]) -> str | None:
    """The key of the suggestion a typed ``answer`` picks, or ``None``.

    ``offered`` are the suggestions in the order they were shown (numbering
    starts at 1). Accepted: the key itself, the number (``"2"``, ``"2."``,
    ``"#2"``), the label in any case and spacing, or a label as shown cut with
    an ellipsis.
    """
    text = answer.strip()
    if not text or not offered:
        return None
    for suggestion in offered:
        if text == suggestion.key:
            return suggestion.key
    number = _NUMBER.fullmatch(text)
    if number:
        index = int(number.group(1))
        return offered[index - 1].key if 1 <= index <= len(offered) else None
    wanted = _normal(text)
    for suggestion in offered:
        if wanted in (_normal(suggestion.label), _normal(suggestion.key)):
            return suggestion.key
    if text.endswith(ELLIPSIS):
        stem = _normal(text.removesuffix(ELLIPSIS))
        found = [s.key for s in offered if stem and _normal(s.label).startswith(stem)]
        if len(found) == 1:
            return found[0]
    return None
