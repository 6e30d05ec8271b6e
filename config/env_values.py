"""``${NAME}`` in a ``config.csv`` value: the secret comes from the environment.

A bot's tokens need not sit in its package: ``telegram-bot-token,${SUPPORT_TG_TOKEN}``
reads the variable when the channel is built. A variable that is not set is
an error naming it (never an empty secret quietly used), and secret keys are
left out of every copy of the configuration the gateway writes or prints.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Key endings that hold a credential (General Bots' keys and ours).
_SECRET_SUFFIXES = ("-key", "-token", "-secret", "-password", "-auth-token", "-sid")
_SECRET_WORDS = ("password", "secret", "token", "api-key", "apikey")


class MissingVariable(LookupError):
    """A ``${NAME}`` whose variable is not set (or is empty)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(
            f"environment variable{'s' if len(names) > 1 else ''} not set: " + ", ".join(names)
        )
        self.names = names


def expand(value: str, environ: Mapping[str, str]) -> str:
    """``value`` with every ``${NAME}`` replaced by the variable's value.

    Raises :class:`MissingVariable` naming each variable that is unset or empty.
    """
    missing = [m for m in _REFERENCE.findall(value) if not environ.get(m)]
    if missing:
        raise MissingVariable(sorted(set(missing)))
    return _REFERENCE.sub(lambda m: environ[m.group(1)], value)


def is_secret_key(key: str) -> bool:
    """Whether a configuration key names a credential (``telegram-bot-token``…)."""
    normalized = re.sub(r"[\s_]+", "-", key.strip().lower())
    return normalized.endswith(_SECRET_SUFFIXES) or any(w in normalized for w in _SECRET_WORDS)


def without_secrets(rows: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``rows`` safe to store or show: credential values are left out."""
    return {key: value for key, value in rows.items() if not is_secret_key(key)}
