"""`danlu serve` as a real process on 127.0.0.1, driven by the official openai client: models,
chat (equal to danlu's own generate), exact streaming events, mixed-adapter batches, adapters
added / switched / removed at run time, every client mistake as the client's typed exception,
and a client that hangs up mid-stream freeing its rows (RELIABILITY.md cases 7–9)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import ROOT
from tests.unit.serve.runs import one_torch_thread, trained_run

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

KEY = "test-key-0123456789"
LONG_PROMPT = "Once upon a time"  # the random base model does not stop within LONG_TOKENS (checked)
LONG_TOKENS = 1500


@dataclass
class Server:
    url: str
    runs: dict
    proc: subprocess.Popen
    log: Path

    def client(self, key: str | None = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key or "none", max_retries=0, timeout=120)

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()

    def raw(self, method: str, path: str, key: str | None = KEY, headers: dict | None = None, **kw) -> httpx.Response:
        headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = {"a": trained_run("a"), "b": trained_run("b", reverse=True)}
    srv = start_server([str(runs["a"]), "--adapter", f"b={runs['b']}", "--max-batch", "4", "--max-waiting", "4"],
                       runs, tmp_path_factory.mktemp("serve") / "server.log")
    yield srv
    srv.proc.terminate()
    srv.proc.wait(timeout=20)


def start_server(args: list[str], runs: dict, log: Path) -> Server:
    """`danlu serve ARGS` on a free port of 127.0.0.1 (key KEY, one torch thread), once /health answers."""
    port = free_port()
    env = {**os.environ, "DANLU_API_KEY": KEY, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "danlu", "serve", *args, "--port", str(port), "--threads", "1"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    srv = Server(f"http://127.0.0.1:{port}", runs, proc, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"danlu serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if srv.health()["status"] == "ok":
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"danlu serve did not come up:\n{log.read_text()[-3000:]}")
    return srv


def ask(client, model: str, question: str, **kw):
    kw = {"temperature": 0, "max_tokens": 24, **kw}
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], **kw)


def test_models_lists_the_base_and_every_adapter(server):
    models = server.client().models.list().data
    assert [m.id for m in models] == ["builtin:tiny", "a", "b"]
    assert server.client().models.retrieve("b").id == "b"


def test_chat_equals_danlu_generate_with_the_runs_template(server):
    from danlu.infer.generate import generate
    from danlu.infer.load import load_for_inference

    question = "What is FlowDesk?"
    ref = generate(load_for_inference(str(server.runs["a"]), device="cpu"),
                   [[{"role": "user", "content": question}]], max_new_tokens=24)[0]
    got = ask(server.client(), "a", question)
    assert got.choices[0].message.content == ref["text"]
    assert got.choices[0].finish_reason == ref["finish_reason"]
    assert (got.usage.prompt_tokens, got.usage.completion_tokens) == (ref["prompt_tokens"], ref["completion_tokens"])
    assert got.object == "chat.completion" and got.model == "a"


def test_stream_events_are_exact(server):
    body = {"model": "b", "messages": [{"role": "user", "content": "如何导出数据？"}], "max_tokens": 24,
            "temperature": 0, "n": 2, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = "".join(r.iter_text())
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]", "the stream ends with exactly data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: {") and "\n" not in e for e in events[:-2])
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    finishes = [(ch["index"], ch["finish_reason"]) for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    assert sorted(i for i, _ in finishes) == [0, 1], "exactly one finish_reason per choice"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"] if ch["index"] == 0)
    whole = ask(server.client(), "b", "如何导出数据？")
    assert text == whole.choices[0].message.content
    streamed = server.client().chat.completions.create(model="b", messages=body["messages"], max_tokens=24,
                                                       temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == text


def test_completions_endpoint(server):
    out = server.client().completions.create(model="builtin:tiny", prompt=["Hello", "你好"], max_tokens=5, n=2,
                                             temperature=0.7, seed=3)
    assert [c.index for c in out.choices] == [0, 1, 2, 3] and out.object == "text_completion"
    assert out.usage.completion_tokens == sum(1 for _ in out.choices) * 5 or out.usage.completion_tokens > 0


def test_requests_for_different_adapters_share_batches_and_stay_correct(server):
    client, jobs = server.client(), [("builtin:tiny", "hi there"), ("a", "What is FlowDesk?"), ("b", "What is FlowDesk?"),
                                     ("a", "支持哪些集成？")]
    alone = [ask(client, m, q, max_tokens=40).choices[0].message.content for m, q in jobs]
    before = server.health()["mixed_adapter_steps"]
    barrier, together = threading.Barrier(len(jobs)), [None] * len(jobs)

    def go(i, m, q):
        barrier.wait()
        together[i] = ask(client, m, q, max_tokens=40).choices[0].message.content

    threads = [threading.Thread(target=go, args=(i, m, q)) for i, (m, q) in enumerate(jobs)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert together == alone
    assert server.health()["mixed_adapter_steps"] > before, "base and adapters were never decoded together"


def test_adapters_are_added_switched_and_removed_at_run_time(server):
    client = server.client()
    added = client.post("/adapters", body={"name": "c", "path": str(server.runs["b"])}, cast_to=object)
    assert added["id"] == "c" and added["parent"] == "builtin:tiny" and added["load_ms"] < 5000
    assert "c" in [m.id for m in client.models.list().data]
    assert ask(client, "c", "What is FlowDesk?").choices[0].message.content == \
        ask(client, "b", "What is FlowDesk?").choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="already served"):
        client.post("/adapters", body={"name": "c", "path": str(server.runs["b"])}, cast_to=object)
    removed = client.delete("/adapters/c", cast_to=object)
    assert removed == {"id": "c", "object": "model", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        ask(client, "c", "hi")
    with pytest.raises(openai.NotFoundError):
        client.delete("/adapters/c", cast_to=object)
    assert ask(client, "b", "hi").choices[0].finish_reason in ("stop", "length")


def test_bad_adapter_folders_are_400(server, tmp_path):
    client = server.client()
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (pickled / "adapter_model.bin").write_bytes(b"not really a pickle")
    for body, needle in [({"name": "x", "path": str(tmp_path / "missing")}, "does not exist"),
                         ({"name": "x", "path": str(pickled)}, "pickle"),
                         ({"name": "bad name!", "path": str(server.runs["b"])}, "not allowed"),
                         ({"name": "builtin:tiny", "path": str(server.runs["b"])}, "already served")]:
        with pytest.raises(openai.BadRequestError, match=needle):
            client.post("/adapters", body=body, cast_to=object)


@pytest.mark.parametrize("kw, error, param", [
    ({"max_tokens": -1}, openai.BadRequestError, "max_tokens"),
    ({"max_tokens": 10**9}, openai.BadRequestError, "max_tokens"),
    ({"messages": [{"role": "user", "content": "word " * 3000}]}, openai.BadRequestError, "messages"),
    ({"messages": []}, openai.BadRequestError, "messages"),
    ({"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]},
     openai.BadRequestError, "messages[0]"),
    ({"model": "no-such-model"}, openai.NotFoundError, "model"),
    ({"n": 99}, openai.BadRequestError, "n"),
    ({"temperature": 3}, openai.BadRequestError, "temperature"),
    ({"stop": ["a", "b", "c", "d", "e"]}, openai.BadRequestError, "stop"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"},
     openai.BadRequestError, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, openai.BadRequestError, "tools"),
    ({"stream_options": {"include_usage": True}}, openai.BadRequestError, "stream_options"),
    ({"messages": [{"role": "user", "content": "x" * (2 << 20)}]}, openai.APIStatusError, None),
])
def test_client_mistakes_are_typed_4xx_in_openais_shape(server, kw, error, param):
    args = {"model": "a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, **kw}
    with pytest.raises(error) as caught:
        server.client().chat.completions.create(**args)
    e = caught.value
    assert 400 <= e.status_code < 500
    assert set(e.body) == {"message", "type", "param", "code"} and e.body["message"]
    if param:
        assert e.body["param"] == param
    else:
        assert e.status_code == 413
    assert server.health()["status"] == "ok"


def test_context_overflow_has_openais_code(server):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(server.client(), "a", "word " * 3000)
    assert caught.value.code == "context_length_exceeded"


def test_non_json_bodies_are_400(server):
    for content, headers in [(b"{not json", {"Content-Type": "application/json"}), (b"[1, 2]", {})]:
        r = server.raw("POST", "/v1/chat/completions", content=content, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_every_route_but_health_needs_the_key(server):
    with pytest.raises(openai.AuthenticationError):
        server.client(key="wrong-key").models.list()
    with pytest.raises(openai.AuthenticationError):
        ask(server.client(key="wrong-key"), "a", "hi")
    for method, path in [("GET", "/v1/models"), ("GET", "/v1/models/a"), ("POST", "/v1/chat/completions"),
                         ("POST", "/v1/completions"), ("POST", "/v1/adapters"), ("DELETE", "/v1/adapters/b"),
                         ("GET", "/no/such/route"), ("GET", "/docs")]:
        r = server.raw(method, path, key=None, json={})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", (method, path)
    assert server.raw("GET", "/health", key=None).status_code == 200
    assert server.raw("GET", "/no/such/route").status_code == 404


@pytest.fixture(scope="module")
def long_prompt(server) -> str:
    """A prompt the random base model answers for LONG_TOKENS tokens without stopping (greedy:
    deterministic), so a request on it is still running while a test looks at it."""
    out = server.client().completions.create(model="builtin:tiny", prompt=LONG_PROMPT, max_tokens=LONG_TOKENS,
                                             temperature=0)
    assert out.choices[0].finish_reason == "length", "pick another LONG_PROMPT: the base model stops on it"
    return LONG_PROMPT


def test_a_client_that_disconnects_mid_stream_frees_its_rows(server, long_prompt):
    cancelled = server.health()["cancelled"]
    body = {"model": "builtin:tiny", "prompt": long_prompt, "max_tokens": LONG_TOKENS, "temperature": 0,
            "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: {")
        assert server.health()["active"] == 1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and server.health()["active"]:
        time.sleep(0.05)
    health = server.health()
    assert health["active"] == 0 and health["cancelled"] > cancelled


def test_a_full_queue_answers_429(server, long_prompt):
    body = {"model": "builtin:tiny", "prompt": long_prompt, "max_tokens": LONG_TOKENS, "temperature": 0, "n": 4,
            "stream": True}
    client = server.client()
    waiting = threading.Thread(target=lambda: client.completions.create(
        model="builtin:tiny", prompt="hi", max_tokens=4, n=4))  # 4 rows fill --max-waiting 4
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:  # 4 rows fill --max-batch 4
        lines = r.iter_lines()  # keep a reference: a collected iterator closes the connection
        next(lines)
        waiting.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.health()["waiting"] < 4:
            time.sleep(0.02)
        assert server.health()["active"] == 4 and server.health()["waiting"] == 4
        with pytest.raises(openai.RateLimitError) as caught:
            client.completions.create(model="builtin:tiny", prompt="hi", max_tokens=4)
        assert caught.value.status_code == 429 and caught.value.body["code"] == "rate_limit_exceeded"
    waiting.join(60)
    assert not waiting.is_alive()
