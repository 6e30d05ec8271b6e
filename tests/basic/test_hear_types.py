"""Every HEAR type of BASIC.md: what it accepts, how it normalizes, what it rejects."""

from __future__ import annotations

import datetime as dt

import pytest

from basic.hear import Invalid, validate

TODAY = dt.date.today()

# (type, user text, stored value)
ACCEPTED = [
    ("STRING", "  as typed ", "  as typed "),
    ("TEXT", "anything", "anything"),
    ("NAME", "joão  da silva", "João Da Silva"),
    ("EMAIL", " Ana@Example.COM ", "ana@example.com"),
    ("URL", "https://example.com/a?b=1", "https://example.com/a?b=1"),
    ("URL", "example.com", "https://example.com"),
    ("PASSWORD", "s3cret-pass", "s3cret-pass"),
    ("INTEGER", " 42 ", 42),
    ("INTEGER", "-7", -7),
    ("NUMBER", "3,5", 3.5),
    ("NUMBER", "3.5", 3.5),
    ("FLOAT", "1.234,56", 1234.56),
    ("DECIMAL", "10", 10),
    ("MONEY", "R$ 1.234,56", 1234.56),
    ("CURRENCY", "$1,234.50", 1234.5),
    ("CREDITCARD", "4111 1111 1111 1111", "************1111"),
    ("DATE", "25/12/2024", "2024-12-25"),
    ("DATE", "2024-12-25", "2024-12-25"),
    ("DATE", "today", TODAY.isoformat()),
    ("DATE", "amanhã", (TODAY + dt.timedelta(days=1)).isoformat()),
    ("HOUR", "2:30 PM", "14:30"),
    ("TIME", "9h", "09:00"),
    ("TIME", "23:05", "23:05"),
    ("BOOLEAN", "Sim", True),
    ("BOOLEAN", "no", False),
    ("BOOLEAN", "não", False),
    ("MOBILE", "(81) 99999-8888", "+5581999998888"),
    ("PHONE", "+1 415 555 2671", "+14155552671"),
    ("ZIPCODE", "01310100", "01310-100"),
    ("CEP", "01310-100", "01310-100"),
    ("CPF", "529.982.247-25", "529.982.247-25"),
    ("CPF", "52998224725", "529.982.247-25"),
    ("CNPJ", "11.222.333/0001-81", "11.222.333/0001-81"),
    ("LANGUAGE", "Português", "pt"),
    ("LANGUAGE", "en-us", "en-us"),
    ("COLOR", "teal", "#008080"),
    ("COLOR", "#a1b2c3", "#A1B2C3"),
    ("UUID", "123E4567-E89B-12D3-A456-426614174000", "123e4567-e89b-12d3-a456-426614174000"),
]

REJECTED = [
    ("NAME", "   "),
    ("NAME", "agent 007"),
    ("EMAIL", "ana@"),
    ("EMAIL", "no at sign"),
    ("URL", "not a url"),
    ("PASSWORD", "short"),
    ("INTEGER", "4.5"),
    ("INTEGER", "four"),
    ("NUMBER", "abc"),
    ("CREDITCARD", "4111 1111 1111 1112"),
    ("DATE", "31/02/2024"),
    ("DATE", "soon"),
    ("HOUR", "25:00"),
    ("HOUR", "13 PM"),
    ("BOOLEAN", "maybe"),
    ("MOBILE", "123"),
    ("ZIPCODE", "abc"),
    ("CPF", "111.111.111-11"),
    ("CPF", "529.982.247-24"),
    ("CNPJ", "11.222.333/0001-82"),
    ("LANGUAGE", "klingon"),
    ("COLOR", "#12"),
    ("UUID", "123"),
]


@pytest.mark.parametrize(("kind", "text", "value"), ACCEPTED)
def test_accepted_and_normalized(kind: str, text: str, value: object) -> None:
    assert validate(kind, text) == value


@pytest.mark.parametrize(("kind", "text"), REJECTED)
def test_rejected(kind: str, text: str) -> None:
    with pytest.raises(Invalid):
        validate(kind, text)


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("Support", "Support"),
        ("support", "Support"),
        ("2", "Support"),
        ("bill", "Billing"),
        (" SALES ", "Sales"),
    ],
)
def test_menu_matching(text: str, choice: str) -> None:
    assert validate("MENU", text, ("Sales", "Support", "Billing")) == choice


@pytest.mark.parametrize("text", ["s", "4", "0", "", "refund"])
def test_menu_rejects_ambiguous_or_unknown(text: str) -> None:
    with pytest.raises(Invalid):
        validate("MENU", text, ("Sales", "Support", "Billing"))
