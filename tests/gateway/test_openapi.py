"""The OpenAPI 3.1 document: well formed, the same routes as the app, examples and real
answers valid against its schemas, served at ``GET /api/openapi.json``."""

from __future__ import annotations

import importlib.util
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from config.settings import BUNDLED_TEMPLATES, Settings
from gateway import openapi
from gateway.app import create_app
from gateway.auth import AuthConfig
from tests.gateway.credentials import ADMIN_TOKEN, bearer

DOC = openapi.build()
BASE = "urn:botserver:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_TEMPLATE = re.compile(r"\{([^{}]+)\}")


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def validator(pointer: str, doc: dict[str, Any] = DOC) -> Draft202012Validator:
    """A validator of the schema at ``pointer`` in ``doc``, its ``$ref``s resolved in ``doc``."""
    registry: Registry[Any] = Registry().with_resource(BASE, DRAFT202012.create_resource(doc))
    return Draft202012Validator(
        {"$ref": f"{BASE}#{pointer}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def check(pointer: str, value: Any) -> None:
    errors = [e.message for e in validator(pointer).iter_errors(value)]
    assert not errors, f"{pointer}: {errors} in {value!r}"


def resolve(node: Any, doc: dict[str, Any] = DOC) -> Any:
    """``node``, or what its (document-local) ``$ref`` names."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def operations(doc: dict[str, Any] = DOC) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


# -- the document's shape ------------------------------------------------------------------


def check_shape(doc: dict[str, Any]) -> None:
    """What OpenAPI 3.1 requires of the document, and what we require of every operation."""
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    schemes = doc["components"]["securitySchemes"]
    operation_ids: set[str] = set()
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        assert path.startswith("/"), where
        assert op["responses"], where
        for status in op["responses"]:
            assert re.fullmatch(r"[1-5]\d\d|default", status), where
            assert "description" in resolve(op["responses"][status], doc), f"{where} {status}"
        assert op["operationId"] not in operation_ids, where
        operation_ids.add(op["operationId"])
        params = [resolve(p, doc) for p in op.get("parameters", [])]
        for p in params:
            assert p["in"] in ("path", "query", "header", "cookie"), where
            assert "schema" in p or "content" in p, where
        assert len({(p["name"], p["in"]) for p in params}) == len(params), where
        in_path = {p["name"] for p in params if p["in"] == "path"}
        assert in_path == set(_TEMPLATE.findall(path)), where
        assert all(p["required"] is True for p in params if p["in"] == "path"), where
        assert "security" in op, f"{where}: say which credential it takes (or [])"
        for requirement in op["security"]:
            assert set(requirement) <= set(schemes), where

    # Every $ref points at something.
    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(doc):
        assert resolve({"$ref": ref}, doc) is not None, ref
    # Every schema is a valid JSON Schema 2020-12 (the dialect of OpenAPI 3.1).
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_document_is_openapi_3_1() -> None:
    check_shape(DOC)


@pytest.mark.skipif(
    importlib.util.find_spec("openapi_spec_validator") is None,
    reason="openapi-spec-validator is not installed",
)
def test_document_passes_openapi_spec_validator() -> None:
    from openapi_spec_validator import validate

    validate(orjson.loads(orjson.dumps(DOC)))


@pytest.mark.parametrize(
    "spoil",
    [
        lambda d: d.update(openapi="3.0.3"),
        lambda d: d["paths"]["/api/v1/bots/{bot}/reload"]["post"].update(parameters=[]),
        lambda d: d["paths"]["/health"]["get"].pop("security"),
        lambda d: d["paths"]["/ready"]["get"]["responses"].update({"200": {}}),
        lambda d: d["paths"]["/ready"]["get"]["responses"].update(
            {"503": {"$ref": "#/components/responses/Nothing"}}
        ),
    ],
    ids=["version", "path-parameter", "security", "description", "dangling-ref"],
)
def test_a_broken_document_is_caught(spoil: Any) -> None:
    broken = openapi.build()
    spoil(broken)
    with pytest.raises((AssertionError, KeyError)):
        check_shape(broken)


# -- the same routes as the app ----------------------------------------------------------


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route; ``HEAD`` goes with its ``GET``."""
    out: set[tuple[str, str]] = set()
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        if isinstance(resource, web.StaticResource):
            path = resource.canonical.rstrip("/") + "/{path}"
        else:
            path = resource.canonical
        out.add((route.method.lower(), path))
    heads = {(m, p) for m, p in out if m == "head"}
    assert all(("get", p) in out for _, p in heads), heads
    return out - heads


def new_app(tmp_path: Path) -> web.Application:
    return create_app(Settings(bots_dir=BUNDLED_TEMPLATES, data_dir=tmp_path), auth=AuthConfig())


def route_differences(
    app: web.Application, doc: dict[str, Any]
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(routes not documented, documented operations that are no route)."""
    registered = app_routes(app)
    documented = {(method, path) for path, method, _ in operations(doc)}
    return registered - documented, documented - registered


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    undocumented, missing = route_differences(new_app(tmp_path), DOC)
    assert undocumented == set(), "routes missing from gateway/openapi.py"
    assert missing == set(), "documented routes the app does not have"


async def _nothing(request: web.Request) -> web.Response:
    return web.Response()


def test_a_new_route_or_a_stale_one_would_be_noticed(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    app.router.add_post("/api/v1/bots/{bot}/broadcast", _nothing)
    stale = openapi.build()
    stale["paths"]["/api/v1/bots/{bot}/handoff"] = {"get": stale["paths"]["/health"]["get"]}
    assert route_differences(app, stale) == (
        {("post", "/api/v1/bots/{bot}/broadcast")},
        {("get", "/api/v1/bots/{bot}/handoff")},
    )


# -- examples ----------------------------------------------------------------------------


def examples() -> Iterator[tuple[str, str, Any]]:
    """(where, pointer of its schema, example) of every example in the document."""

    def media(pointer: str, content: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
        for kind, body in content.items():
            at = pointer + _pointer("content", kind)
            found = [("example", body["example"])] if "example" in body else []
            found += [(n, resolve(e)["value"]) for n, e in body.get("examples", {}).items()]
            assert found, f"{at}: no example"
            for name, value in found:
                yield f"{at} {name}", at + "/schema", value

    for path, method, op in operations():
        at = _pointer("paths", path, method)
        for i, param in enumerate(op.get("parameters", [])):
            if "$ref" not in param and "example" in param:
                yield f"{at} {param['name']}", f"{at}/parameters/{i}/schema", param["example"]
        if "requestBody" in op:
            yield from media(at + "/requestBody", op["requestBody"]["content"])
        for status, response in op["responses"].items():
            if "$ref" in response:
                continue  # checked with the components
            yield from media(at + _pointer("responses", status), response.get("content", {}))
            for name, header in response.get("headers", {}).items():
                if "example" in header:
                    ptr = at + _pointer("responses", status, "headers", name, "schema")
                    yield f"{at} {status} {name}", ptr, header["example"]
        frames = op.get("x-websocket", {})
        for side in ("client_frames", "server_frames"):
            for name, frame in frames.get(side, {}).items():
                ptr = at + _pointer("x-websocket", side, name, "schema")
                for value in frame["examples"]:
                    yield f"{at} {side} {name}", ptr, value
    for name, response in DOC["components"]["responses"].items():
        at = _pointer("components", "responses", name)
        yield from media(at, response.get("content", {}))
        for header_name, header in response.get("headers", {}).items():
            ptr = at + _pointer("headers", header_name, "schema")
            yield f"{at} {header_name}", ptr, header["example"]


def test_every_body_has_an_example_and_every_example_validates() -> None:
    found = list(examples())
    assert len(found) > 50
    for where, pointer, value in found:
        errors = [e.message for e in validator(pointer).iter_errors(value)]
        assert not errors, f"{where}: {errors}"


def test_a_wrong_example_would_be_caught() -> None:
    broken = openapi.build()
    path = broken["paths"]["/api/v1/visitors"]["post"]["responses"]["201"]
    path["content"]["application/json"]["examples"]["visitor"]["value"] = {"user_id": "web-x"}
    ptr = _pointer("paths", "/api/v1/visitors", "post", "responses", "201")
    v = validator(ptr + "/content/application~1json/schema", broken)
    assert not v.is_valid({"user_id": "web-x"})


# -- served, and the real answers match ---------------------------------------------------


def response_schema(path: str, method: str, status: int, kind: str = "application/json") -> str:
    response = DOC["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        return response["$ref"][1:] + _pointer("content", kind, "schema")
    return _pointer("paths", path, method, "responses", str(status), "content", kind, "schema")


async def test_the_document_is_served_without_a_credential(anonymous: TestClient) -> None:
    resp = await anonymous.get("/api/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == orjson.loads(orjson.dumps(DOC))


async def test_real_answers_match_their_schemas(client: TestClient, anonymous: TestClient) -> None:
    messages = "/api/v1/bots/{bot}/messages"
    user = f"oa-{uuid.uuid4().hex[:8]}"
    resp = await client.post("/api/v1/bots/default/messages", json={"user_id": user, "text": "hi"})
    assert resp.status == 200
    answer = await resp.json()
    check(response_schema(messages, "post", 200), answer)
    session = answer["session_id"]

    resp = await client.get(f"/api/v1/bots/default/sessions/{session}/messages")
    assert resp.status == 200
    check(
        response_schema("/api/v1/bots/{bot}/sessions/{session_id}/messages", "get", 200),
        await resp.json(),
    )

    resp = await anonymous.post("/api/v1/bots/default/messages", json={"text": "hi"})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    check(response_schema(messages, "post", 401), await resp.json())

    resp = await client.post(
        "/api/v1/bots/default/messages",
        json={"user_id": user, "text": "hi", "session_id": str(uuid.uuid4())},
    )
    assert resp.status == 404
    check(response_schema(messages, "post", 404), await resp.json())

    resp = await client.post("/api/v1/bots/default/messages", json={"user_id": user})
    assert resp.status == 400
    check(response_schema(messages, "post", 400), await resp.json())

    resp = await anonymous.post("/api/v1/visitors")
    assert resp.status == 201
    check(response_schema("/api/v1/visitors", "post", 201), await resp.json())

    for url in ("/ready", "/health"):
        resp = await anonymous.get(url)
        assert resp.status == 200
        check(response_schema(url, "get", 200), await resp.json())

    admin = bearer(ADMIN_TOKEN)
    for url in ("/api/v1/bots/{bot}/keys", "/api/v1/bots/{bot}/channels"):
        resp = await anonymous.get(url.format(bot="default"), headers=admin)
        assert resp.status == 200
        check(response_schema(url, "get", 200), await resp.json())
    resp = await anonymous.post(
        "/api/v1/bots/default/keys", json={"role": "app", "name": "openapi"}, headers=admin
    )
    assert resp.status == 201
    created = await resp.json()
    check(response_schema("/api/v1/bots/{bot}/keys", "post", 201), created)
    key_url = "/api/v1/bots/{bot}/keys/{key_id}"
    resp = await anonymous.delete(
        key_url.format(bot="default", key_id=created["id"]), headers=admin
    )
    check(response_schema(key_url, "delete", 200), await resp.json())
    resp = await anonymous.delete(
        key_url.format(bot="default", key_id=created["id"]), headers=admin
    )
    assert resp.status == 409
    check(response_schema(key_url, "delete", 409), await resp.json())


async def test_event_stream_and_websocket_frames_match_their_schemas(client: TestClient) -> None:
    op = DOC["paths"]["/api/v1/bots/{bot}/messages"]["post"]
    events = op["responses"]["200"]["x-events"]
    user = f"oa-{uuid.uuid4().hex[:8]}"
    resp = await client.post(
        "/api/v1/bots/default/messages",
        json={"user_id": user, "text": "hi"},
        headers={"Accept": "text/event-stream"},
    )
    assert resp.status == 200
    seen = []
    for block in (await resp.read()).decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        assert lines["event"] in events, lines
        check(events[lines["event"]]["$ref"][1:], orjson.loads(lines["data"]))
        seen.append(lines["event"])
    assert seen[-1] == "done"

    ws_doc = DOC["paths"]["/ws/{bot}"]["get"]["x-websocket"]
    server = {name: frame["schema"]["$ref"][1:] for name, frame in ws_doc["server_frames"].items()}
    async with client.ws_connect("/ws/default") as ws:
        await ws.send_json({"type": "auth", "user_id": user})
        frames = [await ws.receive_json(timeout=10)]
        await ws.send_json({"type": "message", "text": "ada"})
        while frames[-1]["type"] != "done":
            frames.append(await ws.receive_json(timeout=10))
        await ws.send_json({"type": "subscribe"})
        frames.append(await ws.receive_json(timeout=10))
    assert [f["type"] for f in frames][:1] == ["ready"] and frames[-1]["type"] == "error"
    for frame in frames:
        check(server[frame["type"]], frame)
