"""The vLLM backend's glue, driven by a stand-in for vllm (no GPU here): cumulative outputs become
deltas with one finish per choice, sampling parameters and LoRA requests are passed through,
a cancelled request is aborted in vLLM, adapters are registered and removed."""

from __future__ import annotations

import asyncio
import sys
import types
from dataclasses import dataclass, field

import pytest

from danlu.serve.adapters import ModelEntry, Target
from danlu.serve.sampling import SamplingParams
from tests.unit.serve.runs import peft_adapter


@dataclass
class Out:
    index: int
    text: str
    token_ids: list
    finish_reason: str | None = None


@dataclass
class RequestOutput:
    outputs: list


@dataclass
class FakeEngine:
    calls: list = field(default_factory=list)
    aborted: list = field(default_factory=list)
    loras: list = field(default_factory=list)
    slow: bool = False

    async def generate(self, prompt, sampling, request_id, lora_request=None):
        self.calls.append((prompt, sampling, request_id, lora_request))
        words = ["Hel", "lo", " world"]
        for k in range(1, len(words) + 1):
            if self.slow:
                await asyncio.sleep(10)
            yield RequestOutput([Out(i, "".join(words[:k]) + str(i) * (k == 3), list(range(k)),
                                     ("stop" if i == 0 else "length") if k == 3 else None)
                                 for i in range(sampling.n)])

    async def abort(self, request_id):
        self.aborted.append(request_id)

    async def add_lora(self, request):
        self.loras.append(request)

    async def remove_lora(self, lora_id):
        self.loras = [r for r in self.loras if r.lora_int_id != lora_id]


@pytest.fixture
def fake_vllm(monkeypatch):
    engine = FakeEngine()
    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)
    vllm.AsyncEngineArgs = lambda **kw: types.SimpleNamespace(**kw)
    vllm.AsyncLLMEngine = types.SimpleNamespace(from_engine_args=lambda args: engine)
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda name, int_id, path: types.SimpleNamespace(lora_name=name, lora_int_id=int_id,
                                                                          lora_path=path)
    for name, mod in [("vllm", vllm), ("vllm.lora", types.ModuleType("vllm.lora")), ("vllm.lora.request", lora)]:
        monkeypatch.setitem(sys.modules, name, mod)
    return engine


@pytest.fixture
def backend(fake_vllm, tiny_tokenizer):
    from danlu.serve.vllm_backend import VllmBackend

    base = ModelEntry("builtin:tiny", "base", "builtin:tiny", tiny_tokenizer, [2])
    return VllmBackend(Target("builtin:tiny", base, [("a", str(peft_adapter("a")))]), [])


async def collect(backend, model, n=2):
    queue = asyncio.Queue()
    params = SamplingParams(max_tokens=5, temperature=0.5, top_p=0.9, seed=1, stop=("x",))
    backend.submit(backend.resolve(model), [1, 2, 3], n, params, asyncio.get_running_loop(), queue, offset=0)
    events, finished = [], 0
    while finished < n:
        ev = await queue.get()
        events.append(ev)
        finished += ev.finish is not None
    return events


def test_deltas_finishes_params_and_lora_requests(backend, fake_vllm):
    events = asyncio.run(collect(backend, "a"))
    texts = {i: "".join(e.text for e in events if e.choice == i) for i in (0, 1)}
    assert texts == {0: "Hello world0", 1: "Hello world1"}
    assert sorted((e.choice, e.finish) for e in events if e.finish) == [(0, "stop"), (1, "length")]
    prompt, sampling, _, lora = fake_vllm.calls[-1]
    assert prompt == {"prompt_token_ids": [1, 2, 3]} and sampling.n == 2 and sampling.stop == ["x"]
    assert sampling.stop_token_ids == [2] and sampling.seed == 1 and lora.lora_name == "a"
    asyncio.run(collect(backend, "builtin:tiny", n=1))
    assert fake_vllm.calls[-1][3] is None, "the base model runs without a LoRA request"


def test_a_cancelled_request_is_aborted_in_vllm(backend, fake_vllm):
    fake_vllm.slow = True

    async def main():
        params = SamplingParams(max_tokens=5)
        req = backend.submit(backend.resolve("a"), [1], 1, params, asyncio.get_running_loop(), asyncio.Queue())
        await asyncio.sleep(0.05)
        assert backend.stats()["active"] == 1
        req.cancel()
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert len(fake_vllm.aborted) == 1 and backend.stats()["active"] == 0


def test_adapters_come_and_go(backend, fake_vllm):
    entry, _ = asyncio.run(backend.add_adapter("b", str(peft_adapter("b", seed=1))))
    assert entry.info["lora_int_id"] == 2 and [r.lora_name for r in fake_vllm.loras] == ["b"]
    assert [m.id for m in backend.models()] == ["builtin:tiny", "a", "b"]
    asyncio.run(backend.remove_adapter("b"))
    assert fake_vllm.loras == [] and [m.id for m in backend.models()] == ["builtin:tiny", "a"]


def test_without_vllm_the_backend_says_how_to_get_it(monkeypatch):
    from danlu.errors import UserError
    from danlu.serve.vllm_backend import _import_vllm

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(UserError, match="pip install vllm"):
        _import_vllm()
