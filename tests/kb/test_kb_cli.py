"""``botserver kb ingest BOT`` and ``botserver kb crawl BOT URL``, run as a user runs them:
what changed is indexed, once."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from storage.llm_cache_redis import RedisAnswers
from storage.redis import DEFAULT_PREFIX
from tests.databases import temporary_database
from tests.kb.local_site import LocalSite, acme_docs, serve

BOTSERVER = Path(sys.executable).parent / "botserver"
FAQ = Path(__file__).resolve().parent.parent / "bots" / "faq.gbai"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def database(server_database_url: str) -> AsyncIterator[str]:
    async with temporary_database(server_database_url, "botserver_kbcli") as url:
        yield url


async def ingest(bots: Path, data: Path, database: str, **more: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSERVER_")}
    env["DATABASE_URL"] = database
    env.update(more)
    process = await asyncio.create_subprocess_exec(
        str(BOTSERVER),
        "kb",
        "ingest",
        "faq",
        "--bots",
        str(bots),
        "--data-dir",
        str(data),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_ingest_indexes_what_changed_and_says_so(tmp_path: Path, database: str) -> None:
    bots = tmp_path / "bots"
    shutil.copytree(FAQ, bots / "faq.gbai")
    code, out, err = await ingest(bots, tmp_path / "data", database)
    assert code == 0, err
    assert out.startswith("3 indexed, 0 unchanged, 0 removed, 0 skipped")
    help_dir = bots / "faq.gbai" / "faq.gbkb" / "help"
    (help_dir / "shipping.md").unlink()
    (help_dir / "broken.pdf").write_bytes(b"%PDF-1.7 not really a pdf")
    code, out, err = await ingest(bots, tmp_path / "data", database)
    assert code == 0, err
    assert out.startswith("0 indexed, 2 unchanged, 1 removed, 1 skipped"), out
    assert "broken.pdf" in err


async def test_an_unknown_bot_is_a_clear_error(tmp_path: Path, database: str) -> None:
    code, _, err = await ingest(tmp_path, tmp_path / "data", database)
    assert code == 1 and "no bot 'faq'" in err


async def test_an_ingest_that_changed_something_drops_the_cached_answers(
    tmp_path: Path, database: str
) -> None:
    # With Redis, the gateways' semantic cache is shared: the CLI's ingest must reach it.
    client = redis.Redis.from_url(REDIS_URL)
    answers = RedisAnswers(client, prefix=DEFAULT_PREFIX)
    try:
        before = await answers.kb_version("faq")
        bots = tmp_path / "bots"
        shutil.copytree(FAQ, bots / "faq.gbai")
        code, _, err = await ingest(bots, tmp_path / "data", database, REDIS_URL=REDIS_URL)
        assert code == 0, err
        assert await answers.kb_version("faq") == before + 1
        code, out, err = await ingest(bots, tmp_path / "data", database, REDIS_URL=REDIS_URL)
        assert code == 0 and out.startswith("0 indexed, 3 unchanged"), err
        assert await answers.kb_version("faq") == before + 1  # nothing changed: kept
    finally:
        await client.aclose()


async def crawl(bots: Path, data: Path, database: str, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSERVER_")}
    env["DATABASE_URL"] = database
    process = await asyncio.create_subprocess_exec(
        str(BOTSERVER),
        "kb",
        "crawl",
        *args,
        "--bots",
        str(bots),
        "--data-dir",
        str(data),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def site() -> AsyncIterator[LocalSite]:
    async with serve(LocalSite()) as served:
        served.pages.update(acme_docs("http://offsite.invalid"))
        del served.pages["/docs/big.html"]  # the local model embeds every chunk: keep it short
        yield served


async def test_crawl_indexes_a_site_then_only_what_changed(
    tmp_path: Path, database: str, site: LocalSite
) -> None:
    bots = tmp_path / "bots"
    shutil.copytree(FAQ, bots / "faq.gbai")
    (bots / "faq.gbai" / "faq.gbot" / "config.csv").write_text(
        "name,value\nHTTP Allow Private,true\nwebsite-crawl-delay,0\n"
    )
    start = site.url("/docs/")
    code, out, err = await crawl(bots, tmp_path / "data", database, "faq", start, "--refresh", "1w")
    assert code == 0, err
    assert out.startswith("8 indexed, 0 unchanged, 0 removed, 4 skipped; 8 pages of "), out
    assert f"indexed {start}install.html" in err  # progress, page by page
    assert "skipped " in err and "noindex" in err
    # kb ingest leaves the site's pages alone, and the next crawl reads them unchanged
    code, out, err = await ingest(bots, tmp_path / "data", database)
    assert code == 0, err
    assert out.startswith("3 indexed, 0 unchanged, 0 removed"), out
    code, out, err = await crawl(bots, tmp_path / "data", database, "faq", start)
    assert code == 0, err
    assert out.startswith("0 indexed, 8 unchanged, 0 removed"), out


async def test_crawl_refused_is_a_clear_error(
    tmp_path: Path, database: str, site: LocalSite
) -> None:
    bots = tmp_path / "bots"
    shutil.copytree(FAQ, bots / "faq.gbai")  # its config does not allow private addresses
    code, out, err = await crawl(bots, tmp_path / "data", database, "faq", site.url("/docs/"))
    assert code == 1 and out == ""
    assert "not crawled" in err and "refused to connect to 127.0.0.1" in err
    assert site.requests == []
