"""When two questions may share a cached answer: the semantic cache's guard.

An embedding puts "can I cancel my order" and "can I not cancel my order" at a cosine of
0.98, "is it safe to take ibuprofen" and "is it unsafe …" at 0.98: close in wording,
opposite in meaning. A similarity threshold alone cannot tell them apart, so a
near-match found by embedding is served only when this guard agrees.

The guard is a list of what may differ, not of what may not: two questions may share an
answer only when they say the same content words in the same order, and differ only in

- case, punctuation, spacing, hyphens (``e-mail`` / ``email``) and Unicode forms;
- articles and the auxiliaries of a plain question (``how do I`` / ``how can I``,
  ``what's`` / ``what is``), ``to`` and the subject ``I``;
- a plural ``-s`` (``gift cards`` / ``gift card``);
- filler (``please``, ``hi``, ``thanks``…) and a polite opening (``can you tell me``);
- numbers written as words or digits (``two people`` / ``2 people``).

Everything else is a difference that may change the answer: a negation, a number, a name,
another word, or the same words in another order ("from savings to checking" / "from
checking to savings"). :func:`difference` names the first one it finds (``negation``,
``numbers``, ``names``, ``wording``), for the logs and the tests. The cost of a wrong
refusal is one model call; the cost of a wrong share is a wrong answer, so the list of
harmless differences is kept short.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Difference = Literal["negation", "numbers", "names", "wording"]

# Words that make a statement say the opposite (English, Portuguese, Spanish, French, German).
NEGATIONS = frozenset(
    {
        *("not", "no", "never", "none", "nobody", "nothing", "nowhere", "neither", "nor"),
        *("without", "non"),
        *("não", "nao", "nunca", "nenhum", "nenhuma", "nada", "ninguém", "ninguem", "nem"),
        *("sem", "jamais", "tampouco"),
        *("ningún", "ninguno", "ninguna", "nadie", "ni", "sin", "jamás", "tampoco"),
        *("ne", "pas", "rien", "aucun", "aucune", "sans"),
        *("nicht", "kein", "keine", "keinen", "nie", "niemals", "ohne"),
    }
)
# Function words whose presence or absence does not change what is asked.  No pronoun but
# the subject "I" is here ("can I cancel" / "can you cancel" differ), no preposition but
# "to" ("a table for 2" / "a table at 2" differ), no tense ("did" / "will" differ).
IGNORED = frozenset(
    {
        *("a", "an", "the", "i", "do", "does", "can", "could", "is", "are", "am", "to"),
        *("please", "pls", "plz", "kindly", "hi", "hello", "hey", "thanks", "thank", "thx"),
        *("o", "os", "um", "uma", "el", "la", "los", "las", "un", "una", "le", "les"),
        *("por", "favor", "olá", "ola", "oi", "obrigado", "obrigada", "gracias", "hola"),
    }
)
# A polite opening that asks nothing of its own, dropped from the start of a question.
_OPENING = re.compile(
    r"^(?:(?:hi|hello|hey)\b[\s,!.]*)?"
    r"(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?(?:tell|show|let)\s+me\b"
    r"|(?:please\s+)?tell\s+me\b"
    r"|i\s+(?:want|would\s+like|'d\s+like)\s+to\s+know\b"
    r"|do\s+you\s+know\b)\s*",
    re.IGNORECASE,
)
_NUMBER_WORDS = {
    **dict.fromkeys(("zero", "zéro", "cero"), "0"),
    **dict.fromkeys(("one", "uno", "une"), "1"),
    **dict.fromkeys(("two", "dois", "duas", "dos", "deux"), "2"),
    **dict.fromkeys(("three", "três", "tres", "trois"), "3"),
    **dict.fromkeys(("four", "quatro", "cuatro", "quatre"), "4"),
    **dict.fromkeys(("five", "cinco", "cinq"), "5"),
    **dict.fromkeys(("six", "seis"), "6"),
    **dict.fromkeys(("seven", "sete", "siete", "sept"), "7"),
    **dict.fromkeys(("eight", "oito", "ocho", "huit"), "8"),
    **dict.fromkeys(("nine", "nove", "nueve", "neuf"), "9"),
    **dict.fromkeys(("ten", "dez", "diez", "dix"), "10"),
    "eleven": "11",
    "twelve": "12",
    "dozen": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
    "twenty": "20",
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "first": "1st",
    "second": "2nd",
    "third": "3rd",
    "fourth": "4th",
    "fifth": "5th",
    "half": "0.5",
}
_CONTRACTED = {"ca": "can", "wo": "will", "sha": "shall", "ai": "is"}  # can't, won't, …
_SUFFIXES = ("'s", "'re", "'ll", "'ve", "'d", "'m")  # what's -> what (+ is), you're, I'll, …
_TOKEN = re.compile(
    r"\d+(?:[.,:/]\d+)*(?:st|nd|rd|th)?"  # 2, 2.5, 10:30, 1,000, 1st
    r"|[^\W\d_]+(?:[-'][^\W\d_]+)*"  # words, hyphenated words, contractions
)
_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+$")
_SENTENCE_END = re.compile(r"[.!?;:]\s*$")
_TRAILING = re.compile(r"[\s?!.…;:,]+$")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class QuestionShape:
    """What the guard compares of a question."""

    content: tuple[str, ...]  # the words that count, in order, normalized
    negations: int
    numbers: tuple[str, ...]  # sorted
    names: frozenset[str]  # case-folded words written as names (Paris, iPhone)
    acronyms: frozenset[str]  # words in capitals (US, NASA), as written
    words: frozenset[str]  # every word, case-folded, before the plural is dropped


def _plain(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")  # a typed apostrophe
    return _SPACES.sub(" ", text).strip()


def _is_name(word: str, sentence_start: bool) -> bool:
    """A word its writer capitalized as a name: not "I", not a sentence's capital letter."""
    if word in ("I", "I'm", "I'd", "I've", "I'll") or not any(c.isupper() for c in word):
        return False
    return not sentence_start or any(c.isupper() for c in word[1:])  # iPhone, US at the start


def _is_acronym(word: str) -> bool:
    return len(word) > 1 and word.isalpha() and word.isupper()


def _number(token: str) -> str | None:
    if token[0].isdigit():
        if _THOUSANDS.match(token):
            token = token.replace(",", "")
        return token.replace(",", ".") if token.count(",") == 1 else token
    return _NUMBER_WORDS.get(token)


def _stem(word: str) -> str:
    """A plural's singular, the light way (cards -> card, policies -> policy)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "'s")):
        return word[:-1]
    return word


@lru_cache(maxsize=4096)
def shape(text: str) -> QuestionShape:
    """The content words, negations, numbers and names of ``text``."""
    plain = _plain(text)
    content: list[str] = []
    negations = 0
    numbers: list[str] = []
    names: set[str] = set()
    acronyms: set[str] = set()
    words: set[str] = set()
    sentence_start = True
    opening = _OPENING.match(plain)
    skip = opening.end() if opening else 0
    for match in _TOKEN.finditer(plain):
        raw = match.group()
        starts = sentence_start
        sentence_start = bool(_SENTENCE_END.match(plain[match.end() : match.end() + 2]))
        if match.start() < skip:
            continue
        word = raw.casefold()
        words.add(word.replace("-", ""))
        if _is_acronym(raw):
            acronyms.add(raw)
        elif _is_name(raw, starts):
            names.add(word.replace("-", ""))
        number = _number(word)
        if number is not None:
            numbers.append(number)
            content.append(number)
            continue
        if word.endswith("n't") or word == "cannot":  # "don't", "can't" say "do not", "can not"
            base = word[:-3] if word.endswith("n't") else "can"
            base = _CONTRACTED.get(base, base)
            if base not in IGNORED:
                content.append(_stem(base))
            word = "not"
        else:
            for suffix in _SUFFIXES:
                if word.endswith(suffix) and len(word) > len(suffix):
                    word = word[: -len(suffix)]
                    break
        word = word.replace("-", "").replace("'", "")
        if word in NEGATIONS:
            negations += 1
        if word and word not in IGNORED:
            content.append(_stem(word))
    return QuestionShape(
        content=tuple(content),
        negations=negations,
        numbers=tuple(sorted(numbers)),
        names=frozenset(names),
        acronyms=frozenset(acronyms),
        words=frozenset(words),
    )


def difference(a: str, b: str) -> Difference | None:
    """Why ``a`` and ``b`` must not share an answer, or None when they may."""
    first, second = shape(a), shape(b)
    if first.negations != second.negations:
        return "negation"
    if Counter(first.numbers) != Counter(second.numbers):
        return "numbers"
    # A name must be the same word on the other side, written as a name or not ("Canada" /
    # "canada" may share, "Paris" / "Rome" may not); capitals must be capitals on both
    # sides ("the US" / "the us" may not).
    if first.acronyms != second.acronyms:
        return "names"
    if first.names - second.words or second.names - first.words:
        return "names"
    if first.content != second.content:
        return "wording"
    return None


def may_share(a: str, b: str) -> bool:
    """Whether a cached answer to ``a`` may answer ``b``."""
    return difference(a, b) is None


def folded(text: str) -> str:
    """``text`` without what never changes a question: case, spacing, final punctuation."""
    return _TRAILING.sub("", _plain(text).casefold())


def exact_form(text: str) -> str:
    """The text the exact tier hashes: :func:`folded`, except that a word in capitals keeps
    it apart ("the US" is not "the us")."""
    acronyms = sorted(shape(text).acronyms)
    return folded(text) + ("\x00" + "\x00".join(acronyms) if acronyms else "")
