"""What stands between the network and the model (RELIABILITY.md cases 7 and 8):

- with an API key, every route but /health answers 401 without `Authorization: Bearer KEY`
  (unknown routes too, so nothing can be probed); keys are compared in constant time;
- request bodies are limited (413), checked before any route reads them, chunked bodies too;
- the server binds loopback by default and warns when bound elsewhere without a key.

Both checks run as one plain ASGI middleware, ahead of routing."""

from __future__ import annotations

import hmac
import ipaddress
import json

from danlu.serve.errors import APIError

OPEN_PATHS = frozenset({"/health"})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_warning(host: str, api_key: str | None) -> str | None:
    if api_key or is_loopback(host):
        return None
    return (f"serving on {host} without an API key: anyone who can reach this port can use the models and "
            "load or remove adapters; set --api-key (or DANLU_API_KEY), or bind 127.0.0.1")


def key_matches(header: bytes | None, api_key: str) -> bool:
    """Constant-time comparison of 'Bearer KEY' (the time does not depend on where they differ)."""
    expected = b"Bearer " + api_key.encode("utf-8")
    return hmac.compare_digest(header or b"", expected)


async def send_error(send, error: APIError) -> None:
    body = json.dumps(error.body()).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if error.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: API key, then body size."""

    def __init__(self, app, *, api_key: str | None, max_body_bytes: int):
        self.app, self.api_key, self.max_body = app, api_key, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.api_key and scope["path"] not in OPEN_PATHS:
            header = headers.get(b"authorization")
            if not key_matches(header, self.api_key):
                what = "invalid API key" if header else "missing API key: send the header Authorization: Bearer KEY"
                return await send_error(send, APIError(401, what, code="invalid_api_key"))
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await send_error(send, self._too_large())
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            body = await self._read(receive)
            if body is None:
                return await send_error(send, self._too_large())
            receive = _replay(body, receive)
        return await self.app(scope, receive, send)

    def _too_large(self) -> APIError:
        return APIError(413, f"request body larger than {self.max_body} bytes", code="request_too_large")

    async def _read(self, receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later: http.disconnect, which streaming responses listen for

    return replay
