"""The batching engine against transformers' own generate(): each request's greedy tokens are
the ones it gets alone, whatever shares its batch (base, LoRA adapters, a DoRA adapter that
must run apart), whenever it joins; cancelled rows leave at once; adapters come and go."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from danlu.serve.adapters import ModelEntry, attach, detach
from danlu.serve.engine import Engine
from danlu.serve.sampling import SamplingParams
from tests.unit.serve.runs import peft_adapter

QUESTIONS = ["What is FlowDesk?", "如何导出数据？", "Is there a free trial? Tell me more please."]


@pytest.fixture(scope="module")
def setup(tiny_tokenizer):
    from danlu.models.load import load_model

    model = load_model("builtin:tiny", dtype=torch.float32).eval()
    for name, dora in (("a", False), ("b", False), ("d", True)):
        entry = ModelEntry(name, "adapter", str(peft_adapter(name, dora=dora, seed=ord(name))), tiny_tokenizer, [2])
        model = attach(model, entry)
    engine = Engine(model, tiny_tokenizer, max_batch=8)
    engine.solo.add("d")
    engine.start()
    yield engine, tiny_tokenizer
    engine.stop()


def prompt(tok, q):
    text = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


def reference(engine, ids, adapter, n):
    """generate() alone, greedy, no stop token (the stop ids are checked separately)."""
    model = engine.model
    x = torch.tensor([ids])
    with torch.no_grad():
        if adapter is None:
            with model.disable_adapter():
                out = model.generate(input_ids=x, max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
        else:
            model.set_adapter(adapter)
            out = model.generate(input_ids=x, max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[0, x.shape[1]:].tolist()


async def run(engine, ids, adapter=None, delay=0.0, n=1, stop_ids=(), **params):
    await asyncio.sleep(delay)
    params = {"max_tokens": 12, "temperature": 0.0, **params}
    req = engine.submit(ids, n, SamplingParams(**params), adapter, stop_ids, asyncio.get_running_loop())
    texts, finish, tokens = [""] * n, [None] * n, [0] * n
    async for ev in req.events():
        texts[ev.choice] += ev.text
        finish[ev.choice], tokens[ev.choice] = ev.finish or finish[ev.choice], ev.tokens
    return texts, finish, tokens


def test_each_request_gets_its_solo_greedy_tokens_in_mixed_staggered_batches(setup):
    engine, tok = setup
    jobs = [(q, a) for q in QUESTIONS for a in (None, "a", "b", "d")]
    refs = [tok.decode(reference(engine, prompt(tok, q), a, 12), skip_special_tokens=True) for q, a in jobs]
    engine.model.set_adapter("a")  # the DoRA batches must switch to "d" (and back is not needed)
    before = dict(engine.counters)

    async def main():
        return await asyncio.gather(*[run(engine, prompt(tok, q), a, delay=0.004 * i) for i, (q, a) in enumerate(jobs)])

    outs = asyncio.run(main())
    assert [o[0][0] for o in outs] == refs
    assert all(o[1] == ["length"] and o[2] == [12] for o in outs)
    assert engine.counters["max_rows_in_step"] > 2, "requests were not batched"
    assert engine.counters["adapter_switches"] > before["adapter_switches"], "the DoRA adapter ran mixed"
    assert wait_until(lambda: engine.stats()["active"] == 0)


def wait_until(condition, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_stop_token_stop_string_and_length(setup):
    engine, tok = setup
    ids = prompt(tok, "What is FlowDesk?")
    ref = reference(engine, ids, "a", 12)
    texts, finish, tokens = asyncio.run(run(engine, ids, "a", stop_ids=[ref[3]]))
    assert finish == ["stop"] and tokens == [4] and texts[0] == tok.decode(ref[:3], skip_special_tokens=True)
    full = tok.decode(ref, skip_special_tokens=True)
    cut = full[len(full) // 2:][:2]
    texts, finish, _ = asyncio.run(run(engine, ids, "a", stop=(cut,)))
    assert finish == ["stop"] and texts[0] == full[: full.index(cut)]


def test_n_choices_and_seeds(setup):
    engine, tok = setup
    ids = prompt(tok, "hi")
    one = asyncio.run(run(engine, ids, n=3, temperature=1.0, seed=5))[0]
    two = asyncio.run(run(engine, ids, n=3, temperature=1.0, seed=5))[0]
    assert one == two and len(set(one)) > 1, "same seed → same choices; choices differ from each other"


def test_a_cancelled_request_leaves_the_batch_at_once(setup):
    engine, tok = setup

    async def main():
        req = engine.submit(prompt(tok, "hi"), 2, SamplingParams(max_tokens=1500, temperature=0.0), None, [],
                            asyncio.get_running_loop())
        async for _ in req.events():
            break
        assert engine.stats()["active"] == 2
        req.cancel()
        for _ in range(200):
            if engine.stats()["active"] == 0:
                return True
            await asyncio.sleep(0.01)
        return False

    cancelled = engine.counters["cancelled"]
    assert asyncio.run(main())
    assert engine.counters["cancelled"] == cancelled + 2 and engine.counters["tokens"] < 10_000


def test_adapters_attach_and_detach_on_the_engine_thread_while_serving(setup, tiny_tokenizer):
    engine, tok = setup
    entry = ModelEntry("c", "adapter", str(peft_adapter("c", seed=3)), tiny_tokenizer, [2])

    def load(eng):
        eng.model = attach(eng.model, entry)

    engine.call(load).result(timeout=30)
    ids = prompt(tok, "hi")
    texts = asyncio.run(run(engine, ids, "c"))[0]
    assert texts[0] == tok.decode(reference(engine, ids, "c", 12), skip_special_tokens=True)
    t0 = time.perf_counter()
    engine.call(lambda eng: setattr(eng, "model", detach(eng.model, "c"))).result(timeout=30)
    assert time.perf_counter() - t0 < 5 and "c" not in engine.model.peft_config
