"""HTTP keywords: JSON or text back, timeouts, size caps, and the private-address guard.

Everything runs against small aiohttp servers on loopback addresses; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from basic import BasicRuntimeError, Interpreter, compile_source
from channels.private_addresses import forbidden
from config.packages import parse_config_csv
from pipeline.bots import http_policy_from_config
from pipeline.dialog_host import DialogHost
from pipeline.outbound_http import HttpCallError, HttpPolicy, OutboundHttp
from pipeline.turn import Turn

Talk = Callable[[str], Any]

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "::1",
    "::",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "2002:7f00:1::1",
    "not-an-address",
]
ALLOWED = ["8.8.8.8", "93.184.216.34", "1.1.1.1", "2001:4860:4860::8888", "2606:4700::1111"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_and_reserved_addresses_are_refused(address: str) -> None:
    assert forbidden(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert not forbidden(address)


async def _product(request: web.Request) -> web.Response:
    return web.json_response({"name": "fax", "price": 500})


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "body": await request.text(),
            "token": request.headers.get("X-Token", ""),
        }
    )


async def _text(request: web.Request) -> web.Response:
    return web.Response(text="plain words")


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * 4096)


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.Response(text="late")


async def _missing(request: web.Request) -> web.Response:
    return web.json_response({"error": "nope"}, status=404)


@pytest.fixture(scope="module")
async def other_server() -> AsyncIterator[TestServer]:
    """A second server, on another loopback address, that redirects may point to."""
    app = web.Application()
    app.router.add_get("/product", _product)
    server = TestServer(app, host="127.0.0.2")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture(scope="module")
async def server(other_server: TestServer) -> AsyncIterator[TestServer]:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(other_server.make_url("/product")))

    app = web.Application()
    app.router.add_get("/product", _product)
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/text", _text)
    app.router.add_get("/big", _big)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/missing", _missing)
    app.router.add_get("/redirect", redirect)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


OPEN = HttpPolicy(allow_private=True, timeout=1.0, max_bytes=1024)


async def test_json_is_decoded_and_text_is_text(
    http_client: OutboundHttp, server: TestServer
) -> None:
    url = str(server.make_url("/product"))
    assert await http_client.request("GET", url, policy=OPEN) == {"name": "fax", "price": 500}
    text = str(server.make_url("/text"))
    assert await http_client.request("GET", text, policy=OPEN) == "plain words"


async def test_bodies_and_headers_are_sent(http_client: OutboundHttp, server: TestServer) -> None:
    url = str(server.make_url("/echo"))
    sent = await http_client.request("POST", url, {"qty": 2}, {"X-Token": "t0k"}, policy=OPEN)
    assert sent == {"method": "POST", "body": '{"qty": 2}', "token": "t0k"}
    sent = await http_client.request("PUT", url, "raw text", policy=OPEN)
    assert sent == {"method": "PUT", "body": "raw text", "token": ""}


@pytest.mark.parametrize(
    ("path", "policy", "message"),
    [
        ("/big", OPEN, "response larger than 1024 bytes"),
        ("/slow", HttpPolicy(allow_private=True, timeout=0.2), "took longer than 0.2 s"),
        ("/missing", OPEN, "answered 404 Not Found"),
    ],
)
async def test_failures_are_clear(
    http_client: OutboundHttp, server: TestServer, path: str, policy: HttpPolicy, message: str
) -> None:
    with pytest.raises(HttpCallError, match=message):
        await http_client.request("GET", str(server.make_url(path)), policy=policy)


async def test_only_http_urls(http_client: OutboundHttp) -> None:
    with pytest.raises(HttpCallError, match="only http and https"):
        await http_client.request("GET", "file:///etc/passwd", policy=OPEN)


GUARDED = HttpPolicy()


async def test_the_guard_refuses_loopback_by_address_and_by_name(
    http_client: OutboundHttp, server: TestServer
) -> None:
    port = server.port
    for url in (
        f"http://127.0.0.1:{port}/product",
        f"http://localhost:{port}/product",
        f"http://[::ffff:127.0.0.1]:{port}/product",
    ):
        with pytest.raises(HttpCallError, match="refused to connect") as error:
            await http_client.request("GET", url, policy=GUARDED)
        assert "HTTP Allow Private" in str(error.value)


async def test_the_guard_checks_every_redirect_hop(server: TestServer) -> None:
    """The guard sees each connection's address: a redirect to a refused one fails.

    (Offline, 127.0.0.1 stands for the public address and 127.0.0.2 for the private one.)
    """
    client = await OutboundHttp(refuse=lambda address: address != "127.0.0.1").open()
    try:
        direct = str(server.make_url("/product"))
        assert await client.request("GET", direct, policy=GUARDED) == {"name": "fax", "price": 500}
        with pytest.raises(HttpCallError, match=r"refused to connect to 127\.0\.0\.2"):
            await client.request("GET", str(server.make_url("/redirect")), policy=GUARDED)
    finally:
        await client.close()
    # without the guard, the same redirect is followed
    assert await _follow_redirect_unguarded(server) == {"name": "fax", "price": 500}


async def _follow_redirect_unguarded(server: TestServer) -> Any:
    client = await OutboundHttp().open()
    try:
        return await client.request("GET", str(server.make_url("/redirect")), policy=OPEN)
    finally:
        await client.close()


# -- through the pipeline: a bot that allows private addresses, and one that does not --------


async def test_a_bot_that_allows_private_addresses(
    chat: Callable[..., Talk], server: TestServer
) -> None:
    talk = chat("fetch-open")
    assert await talk("hi") == ["Which product URL?"]
    assert await talk(str(server.make_url("/product"))) == ["The fax costs 500."]


async def test_a_bot_that_does_not(
    chat: Callable[..., Talk], server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    talk = chat("fetch-guarded")
    assert await talk("hi") == ["Which product URL?"]
    with caplog.at_level(logging.ERROR, logger="pipeline.dialog"):
        replies = await talk(str(server.make_url("/product")))
    assert replies == ["Sorry, something went wrong in this conversation. Please start again."]
    assert "start.bas:3: GET http://127.0.0.1:" in caplog.text
    assert "refused to connect to 127.0.0.1" in caplog.text


async def test_http_calls_per_turn_follow_the_bot_limit(
    make_turn: Callable[..., Turn], server: TestServer
) -> None:
    turn = make_turn("fetch-open")  # config.csv: BASIC Max HTTP Calls,1
    assert turn.bot.limits.max_http_calls == 1
    url = str(server.make_url("/product"))
    program = compile_source(f'a = GET "{url}"\nb = GET "{url}"\n', "twice.bas")
    interpreter = Interpreter({"twice": program}, DialogHost(turn), limits=turn.bot.limits)
    with pytest.raises(BasicRuntimeError) as error:
        await interpreter.start("twice")
    assert str(error.value) == "twice.bas:2: more than 1 HTTP calls in one turn"


@pytest.mark.parametrize(
    ("config", "policy"),
    [
        ("", HttpPolicy(allow_private=False, timeout=10.0, max_bytes=1024 * 1024)),
        ("HTTP Allow Private,true\nHTTP Timeout,2\n", HttpPolicy(allow_private=True, timeout=2.0)),
        ("http-allow-private,no\nHTTP Max Response Bytes,4096\n", HttpPolicy(max_bytes=4096)),
        ("HTTP Timeout,-1\nHTTP Max Response Bytes,lots\n", HttpPolicy()),  # nonsense: defaults
    ],
)
def test_http_settings_from_config_csv(config: str, policy: HttpPolicy) -> None:
    assert http_policy_from_config(parse_config_csv("name,value\n" + config)) == policy
