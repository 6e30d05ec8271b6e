"""TableStore contract: one suite, every PostgreSQL backend (embedded, server).

The catalog is the General Bots llm-tools sample's ``products.csv`` as
``csv.DictReader`` yields it: strings, with the spaces the file has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from storage.base import Condition, TableStore
from storage.postgres_tables import PostgresTableStore

PRODUCTS = [
    {"name": "fax", "price": " 500"},
    {"name": "tv", "price": " 1200"},
    {"name": "mobile", "price": "200"},
    {"name": "console", "price": " 250"},
    {"name": "chocolate", "price": " 30"},
]


def c(column: str, op: str, value: str | int | float | bool | None) -> Condition:
    return Condition(column, op, value)


@pytest.fixture
def store(pg_pool: asyncpg.Pool) -> TableStore:
    return PostgresTableStore(pg_pool)


@pytest.fixture
async def bot(store: TableStore, unique: Callable[[str], str]) -> str:
    """A bot whose ``products.csv`` is seeded with :data:`PRODUCTS`."""
    bot_id = unique("bot")
    assert await store.seed(bot_id, "products.csv", PRODUCTS)
    return bot_id


async def names(
    store: TableStore, bot: str, *where: Condition, table: str = "products.csv"
) -> list[str]:
    return [row["name"] for row in await store.find(bot, table, where)]


ALL = ["fax", "tv", "mobile", "console", "chocolate"]

FIND_CASES: list[tuple[str, list[Condition], list[str]]] = [
    ("name = fax", [c("name", "=", "fax")], ["fax"]),
    ("price > 300", [c("price", ">", 300)], ["fax", "tv"]),
    ("price > 300 AND name != tv", [c("price", ">", 300), c("name", "!=", "tv")], ["fax"]),
    ("column and value ignore case", [c("NAME", "=", "FaX")], ["fax"]),
    ("value trimmed", [c(" Name ", "=", "  fax ")], ["fax"]),
    ("no match", [c("name", "=", "radio")], []),
    ("no filter", [], ALL),
    ("number as text", [c("price", "=", "500")], ["fax"]),
    ("number compares by value", [c("price", "=", "500.0")], ["fax"]),
    ("float", [c("price", "<", 200.5)], ["mobile", "chocolate"]),
    (">=", [c("price", ">=", 250)], ["fax", "tv", "console"]),
    ("<=", [c("price", "<=", 30)], ["chocolate"]),
    ("!= number", [c("price", "!=", 500)], ["tv", "mobile", "console", "chocolate"]),
    ("<> alias", [c("name", "<>", "fax")], ["tv", "mobile", "console", "chocolate"]),
    ("text ordering", [c("name", ">", "m")], ["tv", "mobile"]),
    ("range", [c("price", ">", 100), c("price", "<", 300)], ["mobile", "console"]),
    ("contradiction", [c("name", "=", "fax"), c("name", "=", "tv")], []),
    ("missing column =", [c("color", "=", "red")], []),
    ("missing column !=", [c("color", "!=", "red")], ALL),
    ("missing column > n", [c("color", ">", 1)], []),
    ("None matches missing", [c("color", "=", None)], ALL),
    ("None never matches a value", [c("name", "=", None)], []),
    ("!= None", [c("name", "!=", None)], ALL),
    ("ordering against None", [c("price", ">", None)], []),
]


@pytest.mark.parametrize(
    ("where", "expected"), [case[1:] for case in FIND_CASES], ids=[case[0] for case in FIND_CASES]
)
async def test_find(
    store: TableStore, bot: str, where: list[Condition], expected: list[str]
) -> None:
    assert await names(store, bot, *where) == expected


async def test_seeded_rows_come_back_trimmed_with_lowercase_keys(
    store: TableStore, unique: Callable[[str], str]
) -> None:
    bot = unique("bot")
    await store.seed(bot, "products.csv", [{" Name": " Fax ", "PRICE ": " 500"}])
    assert await store.find(bot, "products.csv", [c("name", "=", "fax")]) == [
        {"name": "Fax", "price": "500"}
    ]


MIXED = [
    {"code": "10"},
    {"code": "9"},
    {"code": "abc"},
    {"code": ""},
    {"code": " -2.5e1 "},
    {"other": "x"},
]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (c("code", ">", 5), ["10", "9"]),  # numerically: as text "10" < "5"
        (c("code", ">", "5"), ["10", "9"]),
        (c("code", "<", 0), ["-2.5e1"]),
        (c("code", "=", "010"), ["10"]),
        (c("code", "=", -25), ["-2.5e1"]),
        (c("code", "=", "ABC"), ["abc"]),
        (c("code", ">", "a"), ["abc"]),
        (c("code", "=", None), ["", None]),
        (c("code", "!=", 10), ["9", "abc", "", "-2.5e1", None]),
    ],
    ids=repr,
)
async def test_numbers_compare_numerically_with_values_that_read_as_numbers(
    store: TableStore, unique: Callable[[str], str], condition: Condition, expected: list[Any]
) -> None:
    bot = unique("bot")
    await store.seed(bot, "codes.csv", MIXED)
    rows = await store.find(bot, "codes.csv", [condition])
    assert [row.get("code") for row in rows] == expected


async def test_runtime_rows_keep_json_types(store: TableStore, bot: str) -> None:
    row = {"Name": "Radio", "Price": 99, "tags": ["am", "fm"], "meta": {"w": 1.5}, "active": True}
    await store.insert(bot, "products.csv", row)

    found = await store.find(bot, "products.csv", [c("price", "<", 100), c("price", ">", 90)])
    assert found == [
        {"name": "Radio", "price": 99, "tags": ["am", "fm"], "meta": {"w": 1.5}, "active": True}
    ]
    assert await names(store, bot, c("active", "=", True)) == ["Radio"]
    assert await names(store, bot, c("price", "=", "99")) == ["Radio"]
    assert await names(store, bot, c("name", "=", "radio")) == ["Radio"]


async def test_rows_come_in_insertion_order_and_limit_cuts(store: TableStore, bot: str) -> None:
    await store.insert(bot, "products.csv", {"name": "radio", "price": 99})
    assert await names(store, bot) == [*ALL, "radio"]
    limited = await store.find(bot, "products.csv", [], limit=2)
    assert [r["name"] for r in limited] == ["fax", "tv"]
    assert await store.find(bot, "products.csv", [], limit=0) == []


async def test_table_names_ignore_case_and_the_csv_suffix(store: TableStore, bot: str) -> None:
    for table in ["products.csv", "Products.CSV", " PRODUCTS ", "products"]:
        assert await names(store, bot, table=table) == ALL
    assert await names(store, bot, table="orders.csv") == []


async def test_reseeding_the_same_data_does_nothing(store: TableStore, bot: str) -> None:
    await store.insert(bot, "products.csv", {"name": "radio"})
    assert not await store.seed(bot, "products.csv", PRODUCTS)
    # Only spacing differs: the same data once trimmed.
    assert not await store.seed(
        bot, "Products.csv", [{k: v.strip() for k, v in r.items()} for r in PRODUCTS]
    )
    assert await names(store, bot) == [*ALL, "radio"]


async def test_reseeding_changed_data_replaces_seeded_rows_and_keeps_runtime_rows(
    store: TableStore, bot: str
) -> None:
    await store.insert(bot, "products.csv", {"name": "radio", "price": 99})
    await store.update(bot, "products.csv", [c("name", "=", "fax")], {"price": "450"})

    changed = [{"name": "fax", "price": "550"}, {"name": "printer", "price": "300"}]
    assert await store.seed(bot, "products.csv", changed)

    assert await store.find(bot, "products.csv", []) == [
        {"name": "radio", "price": 99},
        {"name": "fax", "price": "550"},
        {"name": "printer", "price": "300"},
    ]
    assert not await store.seed(bot, "products.csv", changed)

    assert await store.seed(bot, "products.csv", [])  # the CSV was emptied
    assert await names(store, bot) == ["radio"]


async def test_concurrent_seeds_load_once(store: TableStore, unique: Callable[[str], str]) -> None:
    bot = unique("bot")
    results = await asyncio.gather(*(store.seed(bot, "products.csv", PRODUCTS) for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    assert await names(store, bot) == ALL


async def test_insert_update_delete_report_counts(store: TableStore, bot: str) -> None:
    await store.insert(bot, "products.csv", {"name": "radio", "price": 99})

    assert await store.update(bot, "products.csv", [c("price", ">", 300)], {"Stock": 0}) == 2
    assert await store.find(bot, "products.csv", [c("stock", "=", 0)]) == [
        {"name": "fax", "price": "500", "stock": 0},
        {"name": "tv", "price": "1200", "stock": 0},
    ]
    assert await store.update(bot, "products.csv", [c("name", "=", "radio")], {"price": 89}) == 1
    assert await store.find(bot, "products.csv", [c("name", "=", "radio")]) == [
        {"name": "radio", "price": 89}
    ]
    assert await store.update(bot, "products.csv", [c("name", "=", "none")], {"x": 1}) == 0

    assert await store.delete(bot, "products.csv", [c("name", "=", "tv")]) == 1
    assert await store.delete(bot, "products.csv", [c("name", "=", "tv")]) == 0
    assert await store.delete(bot, "products.csv", [c("price", "<", 250)]) == 3
    assert await names(store, bot) == ["fax", "console"]
    assert await store.delete(bot, "products.csv", []) == 2
    assert await store.find(bot, "products.csv", []) == []


async def test_bots_never_see_each_others_rows(
    store: TableStore, bot: str, unique: Callable[[str], str]
) -> None:
    other = unique("bot")
    assert await store.seed(other, "products.csv", [{"name": "fax", "price": "9"}])
    await store.insert(other, "products.csv", {"name": "tv", "price": 1})

    assert await store.find(other, "products.csv", []) == [
        {"name": "fax", "price": "9"},
        {"name": "tv", "price": 1},
    ]
    assert await store.update(other, "products.csv", [c("name", "=", "fax")], {"price": "8"}) == 1
    assert await store.delete(other, "products.csv", [c("name", "=", "tv")]) == 1
    assert not await store.seed(other, "products.csv", [{"name": "fax", "price": "9"}])

    # The first bot's table is untouched, and its seed checksum is its own.
    assert await store.find(bot, "products.csv", [c("name", "=", "fax")]) == [
        {"name": "fax", "price": "500"}
    ]
    assert await names(store, bot) == ALL
    assert not await store.seed(bot, "products.csv", PRODUCTS)


@pytest.mark.parametrize("op", ["~", "LIKE", "", "=>", "; DROP"])
async def test_unknown_operators_are_refused(store: TableStore, bot: str, op: str) -> None:
    with pytest.raises(ValueError, match="comparison"):
        await store.find(bot, "products.csv", [c("name", op, "fax")])


@pytest.mark.parametrize(
    "hostile",
    ["name'); DROP TABLE bot_table_rows; --", "' OR '1'='1", "$1", "name\\", '"name"'],
)
async def test_columns_and_values_are_data_not_sql(
    store: TableStore, bot: str, hostile: str
) -> None:
    assert await store.find(bot, "products.csv", [c(hostile, "=", "fax")]) == []
    assert await store.find(bot, "products.csv", [c("name", "=", hostile)]) == []
    assert await store.delete(bot, hostile, [c(hostile, "!=", hostile)]) == 0
    assert await names(store, bot) == ALL
