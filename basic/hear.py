"""HEAR input types: validate one user message and normalize it into a value.

Each validator returns the normalized value or raises Invalid.  The interpreter talks the type's
retry prompt on Invalid and gives up (leaving the variable empty) after three tries.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from typing import Any

from basic.values import parse_number


class Invalid(Exception):
    """The message does not fit the HEAR type."""


Validator = Callable[[str, tuple[str, ...]], Any]
VALIDATORS: dict[str, Validator] = {}
PROMPTS: dict[str, str] = {}
# HEAR types whose value comes from an attachment the host stores (needs a host capability)
MEDIA_KINDS = {
    "IMAGE": "image",
    "FILE": "file",
    "DOCUMENT": "file",
    "PDF": "file",
    "AUDIO": "audio",
    "VOICE": "audio",
    "VIDEO": "video",
    "QRCODE": "qrcode",  # an image, whose code the host reads
}
# What a HEAR for a file asks again when the message brought none.
PROMPTS.update(
    {
        "IMAGE": "Please send an image.",
        "QRCODE": "Please send a picture of the QR code.",
        "FILE": "Please send the file.",
        "DOCUMENT": "Please send the document.",
        "PDF": "Please send the PDF file.",
    }
)


def _type(*names: str, prompt: str) -> Callable[[Validator], Validator]:
    def register(fn: Validator) -> Validator:
        for name in names:
            VALIDATORS[name] = fn
            PROMPTS[name] = prompt
        return fn

    return register


def known_kind(kind: str) -> bool:
    return kind in VALIDATORS or kind in MEDIA_KINDS


def validate(kind: str, text: str, options: tuple[str, ...] = ()) -> Any:
    """Normalize ``text`` for HEAR ``kind``; raises Invalid."""
    return VALIDATORS[kind](text, options)


def retry_prompt(kind: str, options: tuple[str, ...] = ()) -> str:
    if kind == "MENU":
        return "Please choose one of: " + ", ".join(options) + "."
    return PROMPTS.get(kind, "Please try again.")


@_type("STRING", "TEXT", prompt="Please type a message.")
def _string(text: str, _: tuple[str, ...]) -> str:
    return text


_NOT_IN_NAMES = re.compile(r"[@#$%^&*()_+=\[\]{}<>|\\/~`\"]")


@_type("NAME", prompt="Please enter a valid name.")
def _name(text: str, _: tuple[str, ...]) -> str:
    words = text.split()
    if not words or any(map(str.isdigit, text)) or not any(map(str.isalpha, text)):
        raise Invalid
    if len(text) > 100 or _NOT_IN_NAMES.search(text):
        raise Invalid
    return " ".join(w[:1].upper() + w[1:].lower() for w in words)


_EMAIL = re.compile(r"[a-z0-9._%+'-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}")


@_type("EMAIL", prompt="Please enter a valid email address.")
def _email(text: str, _: tuple[str, ...]) -> str:
    value = text.strip().lower()
    if not _EMAIL.fullmatch(value):
        raise Invalid
    return value


@_type("URL", prompt="Please enter a valid URL (https://...).")
def _url(text: str, _: tuple[str, ...]) -> str:
    value = text.strip()
    if not re.fullmatch(r"https?://[^\s/$.?#][^\s]*", value, re.IGNORECASE):
        if re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+(/\S*)?", value, re.IGNORECASE):
            return "https://" + value
        raise Invalid
    return value


@_type("PASSWORD", prompt="Please enter a password with at least 8 characters.")
def _password(text: str, _: tuple[str, ...]) -> str:
    if len(text) < 8:
        raise Invalid
    return text


@_type("INTEGER", "INT", prompt="Please enter a whole number.")
def _integer(text: str, _: tuple[str, ...]) -> int:
    value = text.strip().replace(" ", "")
    if not re.fullmatch(r"[+-]?\d+", value):
        raise Invalid
    return int(value)


def _decimal(text: str) -> float:
    """'3,5' and '3.5' -> 3.5; '1.234,56' and '1,234.56' -> 1234.56."""
    value = text.strip().replace(" ", "")
    if "," in value and "." in value:
        if value.rfind(",") > value.rfind("."):
            value = value.replace(".", "").replace(",", ".")
        else:
            value = value.replace(",", "")
    elif "," in value:
        head, _, tail = value.rpartition(",")
        value = (
            (head.replace(",", "") + "." + tail)
            if len(tail) != 3 or "," in head or head in ("", "0", "-0")
            else head + tail
        )
    number = parse_number(value)
    if number is None:
        raise Invalid
    return float(number)


@_type("NUMBER", "FLOAT", "DECIMAL", "DOUBLE", prompt="Please enter a number.")
def _number(text: str, _: tuple[str, ...]) -> float | int:
    number = _decimal(text)
    return int(number) if number.is_integer() and re.fullmatch(r"\s*[+-]?\d+\s*", text) else number


@_type("MONEY", "CURRENCY", prompt="Please enter an amount, for example 1.234,56.")
def _money(text: str, _: tuple[str, ...]) -> float:
    value = re.sub(r"^\s*(R\$|US\$|\$|€|£|BRL|USD|EUR)\s*", "", text.strip(), flags=re.IGNORECASE)
    return round(_decimal(value), 2)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@_type("CREDITCARD", "CARD", prompt="Please enter a valid card number.")
def _card(text: str, _: tuple[str, ...]) -> str:
    digits = re.sub(r"[\s-]", "", text)
    if not re.fullmatch(r"\d{13,19}", digits) or not _luhn(digits):
        raise Invalid
    return "*" * (len(digits) - 4) + digits[-4:]


@_type("DATE", prompt="Please enter a date, for example 25/12/2024.")
def _date(text: str, _: tuple[str, ...]) -> str:
    value = text.strip().lower()
    today = dt.date.today()
    relative = {
        "today": 0,
        "hoje": 0,
        "hoy": 0,
        "tomorrow": 1,
        "amanhã": 1,
        "amanha": 1,
        "mañana": 1,
        "yesterday": -1,
        "ontem": -1,
        "ayer": -1,
    }
    if value in relative:
        return (today + dt.timedelta(days=relative[value])).isoformat()
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", value)
    try:
        if m:
            return dt.date(int(m[1]), int(m[2]), int(m[3])).isoformat()
        m = re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})(?:[/.-](\d{2,4}))?", value)
        if m:
            year = int(m[3]) if m[3] else today.year
            year += 2000 if year < 100 else 0
            return dt.date(year, int(m[2]), int(m[1])).isoformat()
    except ValueError:
        pass
    raise Invalid


@_type("HOUR", "TIME", prompt="Please enter a time, for example 14:30.")
def _hour(text: str, _: tuple[str, ...]) -> str:
    value = text.strip().lower().replace(" ", "")
    m = re.fullmatch(r"(\d{1,2})(?:[:h](\d{2}))?(am|pm|h)?", value)
    if not m or (m[2] is None and m[3] is None):
        raise Invalid
    hour, minute = int(m[1]), int(m[2] or 0)
    if m[3] in ("am", "pm"):
        if not 1 <= hour <= 12:
            raise Invalid
        hour = hour % 12 + (12 if m[3] == "pm" else 0)
    if hour > 23 or minute > 59:
        raise Invalid
    return f"{hour:02d}:{minute:02d}"


_YES = {"yes", "y", "sim", "s", "si", "sí", "ok", "okay", "true", "1", "claro", "yeah", "yep"}
_NO = {"no", "n", "não", "nao", "false", "0", "nope"}


@_type("BOOLEAN", "BOOL", prompt="Please answer yes or no.")
def _boolean(text: str, _: tuple[str, ...]) -> bool:
    value = text.strip().lower().rstrip(".!")
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise Invalid


@_type("MOBILE", "PHONE", prompt="Please enter a phone number with area code.")
def _mobile(text: str, _: tuple[str, ...]) -> str:
    digits = re.sub(r"[\s().-]", "", text)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not re.fullmatch(r"\+?\d{8,15}", digits):
        raise Invalid
    if digits.startswith("+"):
        return digits
    # no country code: General Bots' default country is Brazil (+55)
    return "+55" + digits if len(digits) in (10, 11) else "+" + digits


@_type("ZIPCODE", "CEP", prompt="Please enter a valid postal code.")
def _zipcode(text: str, _: tuple[str, ...]) -> str:
    value = text.strip().upper()
    if re.fullmatch(r"\d{5}-?\d{3}", value):
        digits = value.replace("-", "")
        return digits[:5] + "-" + digits[5:]
    if re.fullmatch(r"[A-Z0-9][A-Z0-9 -]{2,9}", value) and any(c.isdigit() for c in value):
        return value
    raise Invalid


def _check_digits(digits: str, weights: list[int]) -> int:
    total = sum(int(d) * w for d, w in zip(digits, weights, strict=False))
    rest = total % 11
    return 0 if rest < 2 else 11 - rest


@_type("CPF", prompt="Please enter a valid CPF.")
def _cpf(text: str, _: tuple[str, ...]) -> str:
    digits = re.sub(r"[\s.-]", "", text)
    if not re.fullmatch(r"\d{11}", digits) or len(set(digits)) == 1:
        raise Invalid
    d1 = _check_digits(digits[:9], list(range(10, 1, -1)))
    d2 = _check_digits(digits[:10], list(range(11, 1, -1)))
    if digits[9:] != f"{d1}{d2}":
        raise Invalid
    return f"{digits[:3]}.{digits[3:6]}.{digits[6:9]}-{digits[9:]}"


@_type("CNPJ", prompt="Please enter a valid CNPJ.")
def _cnpj(text: str, _: tuple[str, ...]) -> str:
    digits = re.sub(r"[\s./-]", "", text)
    if not re.fullmatch(r"\d{14}", digits) or len(set(digits)) == 1:
        raise Invalid
    d1 = _check_digits(digits[:12], [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2])
    d2 = _check_digits(digits[:13], [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2])
    if digits[12:] != f"{d1}{d2}":
        raise Invalid
    return f"{digits[:2]}.{digits[2:5]}.{digits[5:8]}/{digits[8:12]}-{digits[12:]}"


_LANGUAGES = {
    "english": "en",
    "inglês": "en",
    "ingles": "en",
    "portuguese": "pt",
    "português": "pt",
    "portugues": "pt",
    "spanish": "es",
    "español": "es",
    "espanhol": "es",
    "french": "fr",
    "français": "fr",
    "francês": "fr",
    "german": "de",
    "deutsch": "de",
    "alemão": "de",
    "italian": "it",
    "italiano": "it",
    "chinese": "zh",
    "japanese": "ja",
    "russian": "ru",
    "arabic": "ar",
    "hindi": "hi",
    "dutch": "nl",
    "korean": "ko",
}


@_type("LANGUAGE", prompt="Please enter a language, for example English or pt.")
def _language(text: str, _: tuple[str, ...]) -> str:
    value = text.strip().lower()
    if value in _LANGUAGES:
        return _LANGUAGES[value]
    if re.fullmatch(r"[a-z]{2}(-[a-z]{2})?", value):
        return value
    raise Invalid


_COLORS = {
    "red": "#FF0000",
    "green": "#008000",
    "blue": "#0000FF",
    "black": "#000000",
    "white": "#FFFFFF",
    "yellow": "#FFFF00",
    "orange": "#FFA500",
    "purple": "#800080",
    "pink": "#FFC0CB",
    "gray": "#808080",
    "grey": "#808080",
    "brown": "#A52A2A",
    "teal": "#008080",
    "vermelho": "#FF0000",
    "verde": "#008000",
    "azul": "#0000FF",
    "preto": "#000000",
    "branco": "#FFFFFF",
    "amarelo": "#FFFF00",
}


@_type("COLOR", "COLOUR", prompt="Please enter a color name or #RRGGBB.")
def _color(text: str, _: tuple[str, ...]) -> str:
    value = text.strip().lower()
    if value in _COLORS:
        return _COLORS[value]
    if re.fullmatch(r"#?[0-9a-f]{6}", value):
        return "#" + value.lstrip("#").upper()
    raise Invalid


@_type("UUID", "GUID", prompt="Please enter a valid UUID.")
def _uuid(text: str, _: tuple[str, ...]) -> str:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise Invalid from None


def _menu(text: str, options: tuple[str, ...]) -> str:
    """Exact (case-insensitive) option, its 1-based number, or a unique partial match."""
    value = text.strip().lower()
    for option in options:
        if option.lower() == value:
            return option
    if value.isdigit() and 1 <= int(value) <= len(options):
        return options[int(value) - 1]
    if value:
        partial = [o for o in options if value in o.lower()]
        if len(partial) == 1:
            return partial[0]
    raise Invalid


VALIDATORS["MENU"] = _menu
