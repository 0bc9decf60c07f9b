"""Issue 13's round trip: builtin:tiny fully fine-tuned on a tiny synthetic tool-call dataset
(OpenAI messages with `tools`) emits the trained call; `danlu serve` of that run, asked by the
official openai client with `tools=`, returns it as `tool_calls` — whole and streamed — and a
conversation carrying the call and its result goes through the same template; `danlu eval`
scores the same run's calls (tool_call_* metrics)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, tiny_config, write_jsonl
from tests.e2e.test_serve import start_server
from tests.unit.serve.runs import one_torch_thread

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
pytestmark = pytest.mark.slow  # ~15 s training + ~10 s server start and requests

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                   "required": ["city"]}}}]
ARGS = {"city": "Paris", "unit": "celsius"}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from danlu.config.load import load_config
    from danlu.train.runner import run_training

    d = tmp_path_factory.mktemp("toolrun")
    call = {"type": "function", "function": {"name": "get_weather", "arguments": json.dumps(ARGS)}}
    row = {"messages": [QUESTION, {"role": "assistant", "content": None, "tool_calls": [call]}], "tools": TOOLS}
    data = write_jsonl(d / "tools.jsonl", [row] * 8)
    cfg = tiny_config(d, data, method={"name": "full"}, output_dir=str(d / "run"),
                      train={"max_steps": 60, "batch_size": 8, "learning_rate": 3e-3, "save_steps": 10000,
                             "max_length": 512})
    run_training(load_config(cfg))  # memorises the call (40 steps suffice; measured)
    srv = start_server([str(d / "run")], {"run": d / "run", "data": data}, d / "server.log")
    yield srv
    srv.proc.terminate()
    srv.proc.wait(timeout=20)


def test_the_trained_call_comes_back_as_tool_calls(server):
    client = server.client()
    model = client.models.list().data[0].id
    out = client.chat.completions.create(model=model, messages=[QUESTION], tools=TOOLS, temperature=0, max_tokens=64)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == ARGS
    assert not choice.message.content

    stream = client.chat.completions.create(model=model, messages=[QUESTION], tools=TOOLS, temperature=0,
                                            max_tokens=64, stream=True)
    chunks = [c for c in stream if c.choices]
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.function.name, json.loads(tc.function.arguments)) for tc in calls] == \
        [(0, "get_weather", ARGS)]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ""
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_history_with_the_call_and_its_result_is_accepted(server):
    client = server.client()
    model = client.models.list().data[0].id
    first = client.chat.completions.create(model=model, messages=[QUESTION], tools=TOOLS, temperature=0, max_tokens=64)
    call = first.choices[0].message.tool_calls[0]
    history = [QUESTION, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
               {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21})}]
    out = client.chat.completions.create(model=model, messages=history, tools=TOOLS, temperature=0, max_tokens=16)
    assert out.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert out.usage.prompt_tokens > first.usage.prompt_tokens
    plain = client.chat.completions.create(model=model, messages=[QUESTION], tools=TOOLS, tool_choice="none",
                                           temperature=0, max_tokens=64)
    assert plain.choices[0].message.tool_calls is None
    assert plain.usage.prompt_tokens < first.usage.prompt_tokens, "tool_choice none shows the model no tools"


def test_danlu_eval_reports_tool_call_accuracy(server, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "danlu", "eval", str(server.runs["run"]), "--data", str(server.runs["data"]),
           "--no-loss", "--limit", "2", "-o", str(tmp_path / "eval")]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]["model"]
    assert metrics["tool_call_name"] == metrics["tool_call_valid_json"] == metrics["tool_call_exact"] == 100.0
