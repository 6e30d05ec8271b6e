"""BASIC tables (FIND/SAVE/UPDATE/DELETE on ``"products.csv"``) on PostgreSQL.

Every row of every bot's table is one JSONB object in ``bot_table_rows``.
Names are normalized on the way in so that matching is case-insensitive
with plain index lookups and key accesses:

* a table name is trimmed, lowercased and loses a trailing ``.csv``
  (``"Products.CSV"``, ``"products.csv"`` and ``"products"`` are one table);
* row keys are trimmed and lowercased on every write, so rows come back with
  lowercase keys; seeded (CSV) values are trimmed, values inserted at run time
  are stored as given.

FIND conditions become SQL built only from fixed fragments and ``$n``
placeholders: column names and values always travel as parameters
(``data->>($n::text)``), never as SQL text.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from storage.base import Condition
from storage.postgres import translate_errors

# A value "reads as a number": optional sign, digits with an optional
# fraction, optional short exponent (bounded so the cast cannot overflow),
# surrounding whitespace allowed. The same rule on both sides of a comparison.
_NUMBER = r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{1,3})?\s*$"
_PY_NUMBER = re.compile(_NUMBER.replace(r"\s", r"[ \t\r\n]"))

# Trims whitespace the same way on both sides of a text comparison.
_TRIM = r"regexp_replace({}, '^\s+|\s+$', '', 'g')"

_ORDERING = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
_EQUALITY = {"=": False, "==": False, "!=": True, "<>": True}  # op -> negated

_SEED_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

_SEED_CHECKSUM = "SELECT checksum FROM bot_table_seeds WHERE bot_id = $1 AND table_name = $2"

_DELETE_SEEDED = """
DELETE FROM bot_table_rows WHERE bot_id = $1 AND table_name = $2 AND origin = 'seed'
"""

# One statement for all rows; identities follow the CSV order.
_INSERT_SEEDED = """
INSERT INTO bot_table_rows (bot_id, table_name, data, origin)
SELECT $1, $2, r.data, 'seed'
FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS r(data, ord)
ORDER BY r.ord
"""

_RECORD_SEED = """
INSERT INTO bot_table_seeds (bot_id, table_name, checksum) VALUES ($1, $2, $3)
ON CONFLICT (bot_id, table_name)
DO UPDATE SET checksum = EXCLUDED.checksum, seeded_at = now()
"""

_INSERT = "INSERT INTO bot_table_rows (bot_id, table_name, data) VALUES ($1, $2, $3)"


def table_key(table: str) -> str:
    """The stored name of ``table``: trimmed, lowercased, without ``.csv``."""
    name = table.strip().lower()
    return name.removesuffix(".csv") or name


def _normalized(row: Mapping[Any, Any], *, trim: bool) -> dict[str, Any]:
    return {
        str(key).strip().lower(): value.strip() if trim and isinstance(value, str) else value
        for key, value in row.items()
        if key is not None  # csv.DictReader's key for surplus fields
    }


def _numeric(value: object) -> Decimal | None:
    """``value`` as a number when it is one or reads as one, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str) and _PY_NUMBER.match(value):
        return Decimal(value.strip())
    return None


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Where:
    """A WHERE clause for one bot's table; parameters ``$1`` and ``$2`` are bot and table."""

    def __init__(self, params: list[Any]) -> None:
        self.params = params

    def _param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def sql(self, where: Sequence[Condition]) -> str:
        return " AND ".join(["bot_id = $1", "table_name = $2", *map(self._condition, where)])

    def _condition(self, cond: Condition) -> str:
        op = cond.op.strip()
        if op not in _ORDERING and op not in _EQUALITY:
            raise ValueError(f"unknown comparison {cond.op!r} in a table condition")
        if cond.value is None and op in _ORDERING:
            return "FALSE"  # nothing is greater or less than a missing value
        field = f"(data->>({self._param(cond.column.strip().lower())}::text))"

        if cond.value is None:  # missing, JSON null or blank
            blank = rf"coalesce({field} ~ '^\s*$', true)"
            return f"NOT {blank}" if _EQUALITY[op] else blank

        number = _numeric(cond.value)
        if number is not None:
            # CASE, not AND: only CASE guarantees the guard runs before the cast.
            left = f"(CASE WHEN {field} ~ '{_NUMBER}' THEN {field}::numeric END)"
            right = f"{self._param(number)}::numeric"
        else:
            # Byte order (COLLATE "C") so <, > mean the same on every server.
            left = f'lower({_TRIM.format(field)}) COLLATE "C"'
            right = f"lower({_TRIM.format(self._param(_as_text(cond.value)) + '::text')})"

        if op in _ORDERING:
            return f"coalesce({left} {_ORDERING[op]} {right}, false)"
        equal = f"coalesce({left} = {right}, false)"
        # != holds for rows lacking the column too, as authors expect.
        return f"NOT {equal}" if _EQUALITY[op] else equal


class PostgresTableStore:
    """:class:`storage.base.TableStore` on ``bot_table_rows`` and ``bot_table_seeds``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def seed(self, bot_id: str, table: str, rows: Sequence[dict[str, Any]]) -> bool:
        """Replace the seeded rows when the (normalized) data differs from the last seed.

        Rows saved at run time are kept. ``True`` when it (re)seeded, also when
        the new data is empty; ``False`` when the data is unchanged.
        """
        name = table_key(table)
        data = [_normalized(row, trim=True) for row in rows]
        checksum = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
        with translate_errors:
            async with self._pool.acquire() as conn, conn.transaction():
                # Instances loading the same package at once seed it once.
                await conn.execute(_SEED_LOCK, f"botserver.seed:{bot_id}:{name}")
                if await conn.fetchval(_SEED_CHECKSUM, bot_id, name) == checksum:
                    return False
                await conn.execute(_DELETE_SEEDED, bot_id, name)
                if data:
                    await conn.execute(_INSERT_SEEDED, bot_id, name, data)
                await conn.execute(_RECORD_SEED, bot_id, name, checksum)
        return True

    async def find(
        self, bot_id: str, table: str, where: Sequence[Condition], *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        if limit is not None and limit <= 0:
            return []
        params: list[Any] = [bot_id, table_key(table)]
        clause = _Where(params).sql(where)
        params.append(limit)  # LIMIT NULL is no limit
        query = f"SELECT data FROM bot_table_rows WHERE {clause} ORDER BY id LIMIT ${len(params)}"
        with translate_errors:
            rows = await self._pool.fetch(query, *params)
        return [row[0] for row in rows]

    async def insert(self, bot_id: str, table: str, row: dict[str, Any]) -> None:
        with translate_errors:
            await self._pool.execute(
                _INSERT, bot_id, table_key(table), _normalized(row, trim=False)
            )

    async def update(
        self, bot_id: str, table: str, where: Sequence[Condition], changes: dict[str, Any]
    ) -> int:
        """Merge ``changes`` into the matching rows (a seeded row stays a seeded row)."""
        params: list[Any] = [bot_id, table_key(table), _normalized(changes, trim=False)]
        clause = _Where(params).sql(where)
        query = f"""
            WITH changed AS (
                UPDATE bot_table_rows SET data = data || $3::jsonb WHERE {clause} RETURNING 1
            )
            SELECT count(*) FROM changed
        """
        with translate_errors:
            count: int = await self._pool.fetchval(query, *params)
        return count

    async def delete(self, bot_id: str, table: str, where: Sequence[Condition]) -> int:
        params: list[Any] = [bot_id, table_key(table)]
        clause = _Where(params).sql(where)
        query = f"""
            WITH gone AS (DELETE FROM bot_table_rows WHERE {clause} RETURNING 1)
            SELECT count(*) FROM gone
        """
        with translate_errors:
            count: int = await self._pool.fetchval(query, *params)
        return count
