"""The key guards every route but /health (unknown ones too); bodies are bounded; binding
anywhere but loopback without a key warns (RELIABILITY.md cases 7 and 8)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from danlu.serve.security import Guard, bind_warning, is_loopback, key_matches

KEY = "s3cret-key-123"


async def echo(request):
    body = await request.body()
    return JSONResponse({"bytes": len(body)})


def client(api_key=KEY, max_body=1000):
    inner = Starlette(routes=[Route("/health", echo), Route("/v1/models", echo),
                              Route("/v1/chat/completions", echo, methods=["POST"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=Guard(inner, api_key=api_key, max_body_bytes=max_body)),
                             base_url="http://t")


def call(method, path, **kw):
    async def go():
        async with client(**kw.pop("client", {})) as c:
            return await c.request(method, path, **kw)
    return asyncio.run(go())


@pytest.mark.parametrize("method, path", [("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                                          ("GET", "/no/such/route"), ("DELETE", "/v1/adapters/x")])
@pytest.mark.parametrize("header", [None, "Bearer wrong", "s3cret-key-123", "Bearer s3cret-key-12"])
def test_every_route_but_health_needs_the_key(method, path, header):
    headers = {"Authorization": header} if header else {}
    r = call(method, path, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"


def test_health_is_open_and_the_right_key_passes():
    assert call("GET", "/health").status_code == 200
    assert call("GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_without_a_key_nothing_is_asked():
    assert call("GET", "/v1/models", client={"api_key": None}).status_code == 200


def test_bodies_over_the_limit_are_413_with_or_without_content_length():
    auth = {"Authorization": f"Bearer {KEY}"}
    ok = call("POST", "/v1/chat/completions", headers=auth, content=b"x" * 1000)
    assert ok.status_code == 200 and ok.json() == {"bytes": 1000}
    big = call("POST", "/v1/chat/completions", headers=auth, content=b"x" * 1001)
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"

    async def chunks():
        for _ in range(5):
            yield b"y" * 300
    chunked = call("POST", "/v1/chat/completions", headers=auth, content=chunks())
    assert chunked.status_code == 413


def test_key_comparison_uses_the_whole_header():
    assert key_matches(b"Bearer abc", "abc")
    assert not key_matches(b"Bearer abcd", "abc") and not key_matches(None, "abc") and not key_matches(b"", "abc")


@pytest.mark.parametrize("host, key, warns", [("127.0.0.1", None, False), ("localhost", None, False),
                                              ("::1", None, False), ("0.0.0.0", None, True),
                                              ("192.168.1.5", None, True), ("0.0.0.0", "k" * 10, False)])
def test_bind_warning(host, key, warns):
    assert bool(bind_warning(host, key)) is warns
    assert is_loopback(host) is (host in ("127.0.0.1", "localhost", "::1"))


def test_serve_warns_when_bound_beyond_loopback_without_a_key(monkeypatch):
    import types

    import uvicorn

    from danlu.serve import server
    from danlu.serve.app import ServeSettings

    backend = types.SimpleNamespace(name="hf", models=lambda: [], base=None)
    monkeypatch.setattr(server, "build_backend", lambda *a: backend)
    monkeypatch.setattr(server, "create_app", lambda *a: None)
    bound, warnings = {}, []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: bound.update(host=host, port=port))
    monkeypatch.setattr(server.log, "warning", lambda msg, *a: warnings.append(msg % a if a else msg))
    server.serve("builtin:tiny", [], ServeSettings(host="0.0.0.0", port=9999))
    assert bound == {"host": "0.0.0.0", "port": 9999}
    assert len(warnings) == 1 and "without an API key" in warnings[0]
    server.serve("builtin:tiny", [], ServeSettings())
    assert bound["host"] == "127.0.0.1" and len(warnings) == 1, "loopback is the default and quiet"
    server.serve("builtin:tiny", [], ServeSettings(host="0.0.0.0", api_key="k" * 16))
    assert len(warnings) == 1, "a key silences the warning"
