"""A package's ``.gbdata/*.csv`` files seed its tables, on load and on reload."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from config.packages import load_package, parse_data_csv
from pipeline.bots import BotRegistry
from pipeline.tools import run_tool
from pipeline.turn import Turn
from storage.base import Condition
from storage.services import Stores

TEST_BOTS = Path(__file__).resolve().parent.parent / "bots"

CSV = [
    (
        "name,price\nfax, 500\ntv, 1200\n",
        [{"name": "fax", "price": "500"}, {"name": "tv", "price": "1200"}],
    ),
    ("\ufeff Name , Price \n\nfax,500\n\n", [{"Name": "fax", "Price": "500"}]),
    ("name,price,notes\nfax,500\n", [{"name": "fax", "price": "500", "notes": ""}]),
    ("name,price\nfax,500,extra\n", [{"name": "fax", "price": "500"}]),
    ('name,notes\nfax,"a, b"\n', [{"name": "fax", "notes": "a, b"}]),
    ("name,,price\nfax,x,500\n", [{"name": "fax", "price": "500"}]),
    ("name,price\n", []),
    ("", []),
]


@pytest.mark.parametrize(("text", "rows"), CSV)
def test_csv_rows(text: str, rows: list[dict[str, str]]) -> None:
    assert parse_data_csv(text) == rows


def test_the_package_carries_its_data_by_lowercased_file_name() -> None:
    package = load_package(TEST_BOTS / "llm-tools.gbai")
    assert list(package.data) == ["products.csv"]
    assert package.data["products.csv"][0] == {"name": "fax", "price": "500"}


def copy_bot(source: Path, folder: Path, name: str) -> Path:
    """Copy a test bot under a new name (the package's inner folders follow the name)."""
    target = folder / f"{name}.gbai"
    shutil.copytree(source, target)
    for inner in list(target.iterdir()):
        if inner.is_dir():
            inner.rename(target / f"{name}{inner.suffix}")
    return target


async def test_tables_are_seeded_on_load_and_reload(
    tmp_path: Path, stores: Stores, make_turn: Callable[..., Turn]
) -> None:
    name = f"shop-{uuid.uuid4().hex[:6]}"
    package = copy_bot(TEST_BOTS / "llm-tools.gbai", tmp_path, name)
    registry = BotRegistry(tmp_path, tables=stores.tables)
    await registry.load_all()
    rows = await stores.tables.find(name, "products.csv", [Condition("price", ">", 240)])
    assert [r["name"] for r in rows] == ["fax", "tv", "console"]

    # a row saved at run time stays; the seed follows the file
    await stores.tables.insert(name, "products.csv", {"name": "radio", "price": 80})
    products = package / f"{name}.gbdata" / "products.csv"
    products.write_text("name,price\nfax, 450\ntv, 1200\n")
    await registry.reload(name)
    rows = await stores.tables.find(name, "Products.CSV", [])
    assert sorted((r["name"], str(r["price"])) for r in rows) == [
        ("fax", "450"),
        ("radio", "80"),
        ("tv", "1200"),
    ]

    bot = registry.get(name)
    assert bot is not None
    turn = make_turn("llm-tools")
    turn.bot = bot
    assert (await run_tool(turn, "get-price", {"product": "fax"})).result == "450"
    # another bot's table of the same name is untouched
    assert (await run_tool(make_turn("llm-tools"), "get-price", {"product": "fax"})).result == "500"
