"""``SET SCHEDULE`` expressions: cron (5 fields, or 6 with seconds first, as General Bots
writes them) and the natural forms General Bots reads ("every 5 minutes", "at 9am", ...).

Every schedule is normalized to a 6-field cron with seconds first, the form
:func:`next_occurrence` reads.
"""

from __future__ import annotations

import datetime as dt
import re

from croniter import croniter  # type: ignore[import-untyped]

_DAYS = {
    "sunday": "0", "monday": "1", "tuesday": "2", "wednesday": "3", "thursday": "4",
    "friday": "5", "saturday": "6",
}  # fmt: skip
_SIMPLE = {
    "every minute": "* * * * *",
    "every 1 minute": "* * * * *",
    "every hour": "0 * * * *",
    "every 1 hour": "0 * * * *",
    "hourly": "0 * * * *",
    "every day": "0 0 * * *",
    "daily": "0 0 * * *",
    "every week": "0 0 * * 0",
    "weekly": "0 0 * * 0",
    "every month": "0 0 1 * *",
    "monthly": "0 0 1 * *",
    "every year": "0 0 1 1 *",
    "yearly": "0 0 1 1 *",
    "annually": "0 0 1 1 *",
}


class ScheduleError(ValueError):
    """A schedule expression that is neither cron nor a known natural form."""


def _time(text: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?\s*(am|pm)?", text.strip())
    if not m:
        return None
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    if m.group(3) == "pm" and hour < 12:
        hour += 12
    elif m.group(3) == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        return None
    return hour, minute


def _natural(text: str) -> str | None:
    words = " ".join(text.lower().split())
    if words in _SIMPLE:
        return _SIMPLE[words]
    m = re.fullmatch(r"every (\d+) (minute|hour)s?", words)
    if m:
        n = int(m.group(1))
        if m.group(2) == "minute" and 0 < n <= 59:
            return f"*/{n} * * * *"
        if m.group(2) == "hour" and 0 < n <= 23:
            return f"0 */{n} * * *"
        return None
    m = re.fullmatch(r"(?:every )?(day|weekday|weekdays|weekend|\w+day)? ?at (.+)", words)
    if m:
        when = _time(m.group(2))
        if when is None:
            return None
        day = (m.group(1) or "day").removeprefix("every ")
        dow = {"day": "*", "weekday": "1-5", "weekdays": "1-5", "weekend": "0,6"}.get(day)
        dow = dow or _DAYS.get(day)
        if dow is None:
            return None
        return f"{when[1]} {when[0]} * * {dow}"
    return None


def normalize_schedule(text: str) -> str:
    """The 6-field cron (seconds first) of a SET SCHEDULE expression; ScheduleError if none."""
    fields = text.split()
    if len(fields) in (5, 6) and all(re.fullmatch(r"[\d*/,\-?LW#A-Za-z]+", f) for f in fields):
        cron = text.strip() if len(fields) == 6 else "0 " + " ".join(fields)
        if croniter.is_valid(cron, second_at_beginning=True):
            return " ".join(cron.split())
        raise ScheduleError(f"invalid cron expression {text!r}")
    natural = _natural(text)
    if natural is None:
        raise ScheduleError(
            f'cannot read the schedule {text!r}: use cron such as "0 9 * * *" (also with '
            'seconds first) or a form like "every 5 minutes", "every hour", "at 9am", '
            '"every monday at 9am", "weekdays at 8am"'
        )
    return "0 " + natural


def next_occurrence(cron: str, after: dt.datetime) -> dt.datetime:
    """The first time strictly after ``after`` matching a normalized cron."""
    result: dt.datetime = croniter(cron, after, second_at_beginning=True).get_next(dt.datetime)
    return result
