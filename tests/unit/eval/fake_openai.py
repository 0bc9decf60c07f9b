"""A fake OpenAI-compatible judge on 127.0.0.1 (FastAPI + uvicorn in a thread), for tests.

Judges by model name:
  fair   picks the answer that equals the reference answer shown to it (else "tie"); scores 9 / 2
  first  always says "A" (a judge with pure position bias); scores 5
  prose  answers in prose instead of JSON ("The winner is B.")
Every request is recorded in `server.requests`."""

import re
import socket
import threading
import time
from contextlib import contextmanager

from fastapi import FastAPI, Request  # module level: FastAPI reads the handler's annotations


def _section(text: str, name: str):
    m = re.search(rf"\[{re.escape(name)}\]\n(.*?)(?:\n\n\[|\n\n(?:Which|Score)|\Z)", text, re.DOTALL)
    return m.group(1) if m else None


def verdict(model: str, user: str) -> str:
    ref = _section(user, "Reference answer")
    if "[Answer A]" not in user:  # single-answer grading
        if model == "fair":
            return '{"score": %d, "reason": "checked"}' % (9 if _section(user, "Answer") == ref else 2)
        return '{"score": 5, "reason": "fine"}'
    if model == "first":
        return '{"winner": "A", "reason": "the first one reads better"}'
    a, b = _section(user, "Answer A"), _section(user, "Answer B")
    winner = "A" if a == ref and b != ref else "B" if b == ref and a != ref else "tie"
    if model == "prose":
        return f"After careful thought, the winner is {winner}."
    return '{"winner": "%s", "reason": "matches the reference"}' % winner


def make_app(requests: list):
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        requests.append(body)
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        return {
            "id": f"chatcmpl-{len(requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": verdict(body["model"], user)}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def fake_judge():
    """Yields (base_url, requests) while the server runs."""
    import uvicorn

    requests: list = []
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(requests), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("the fake judge did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1", requests
    finally:
        server.should_exit = True
        thread.join(timeout=10)
