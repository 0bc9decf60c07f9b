"""Log-likelihood scoring and structured output through a real `danlu serve`: what lm-eval's
local-completions sends (token-id prompts, echo, logprobs, max_tokens 0), chat logprobs, the
log-likelihoods equal to danlu eval's in-process ones, response_format json_object / json_schema
through the official client's `beta.chat.completions.parse`; mistakes are plain 400s naming the field."""

from __future__ import annotations

import json
import math
from typing import Literal

import openai
import pytest
import torch
from pydantic import BaseModel, Field

from tests.e2e.test_serve import KEY, start_server
from tests.unit.serve.runs import one_torch_thread, trained_run

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
CONTEXT = "Question: What is FlowDesk?\nAnswer:"
OPTIONS = [" A help desk tool", " A fruit", " 一种工具"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    run = trained_run("a")
    srv = start_server([str(run)], {"a": run}, tmp_path_factory.mktemp("serve-lp") / "server.log")
    yield srv, run
    srv.proc.terminate()
    srv.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def loaded(served):
    from danlu.infer.load import load_for_inference

    return load_for_inference(str(served[1]), dtype=torch.float32, device="cpu")


def post(srv, path: str, **body):
    return srv.raw("POST", path, json={"model": "a", **body})


def test_loglikelihoods_from_the_server_equal_danlu_evals(served, loaded):
    """lm-eval's request: token ids of context + continuation, echo, logprobs 1, max_tokens 1
    (its last token is generated and dropped); the sum over the continuation must equal
    danlu.eval.likelihood.option_logprobs within 1e-4."""
    from danlu.eval.likelihood import option_logprobs

    srv, _ = served
    tok = loaded.tokenizer
    context = tok(CONTEXT)["input_ids"]
    conts = [tok(o, add_special_tokens=False)["input_ids"] for o in OPTIONS]
    reference = option_logprobs(loaded.model, context, conts)
    r = post(srv, "/v1/completions", prompt=[context + c for c in conts], echo=True, logprobs=1, max_tokens=1,
             temperature=0)
    assert r.status_code == 200, r.text
    for choice, cont, (ref, n) in zip(r.json()["choices"], conts, reference):
        lp = choice["logprobs"]
        assert len(lp["tokens"]) == len(context) + n + 1 and lp["token_logprobs"][0] is None
        got = sum(lp["token_logprobs"][len(context):-1])
        assert abs(got - ref) < 1e-4, (got, ref)
        for value, top in zip(lp["token_logprobs"][1:], lp["top_logprobs"][1:]):
            assert len(top) == 1 and max(top.values()) >= value - 1e-6
        # the generated last token is the greedy one: its logprob is the top one
        assert math.isclose(lp["token_logprobs"][-1], max(lp["top_logprobs"][-1].values()), abs_tol=1e-6)
        assert lp["text_offset"] == sorted(lp["text_offset"])


def test_max_tokens_zero_scores_the_prompt_only(served, loaded):
    srv, _ = served
    ids = loaded.tokenizer(CONTEXT)["input_ids"]
    out = srv.client().completions.create(model="a", prompt=ids, echo=True, logprobs=3, max_tokens=0)
    choice = out.choices[0]
    assert out.usage.completion_tokens == 0 and choice.text == loaded.tokenizer.decode(ids)
    assert len(choice.logprobs.tokens) == len(ids) and all(len(t) == 3 for t in choice.logprobs.top_logprobs[1:])
    # the same prompt as text scores the same
    again = post(srv, "/v1/completions", prompt=CONTEXT, echo=True, logprobs=3, max_tokens=0).json()["choices"][0]
    assert again["logprobs"]["token_logprobs"] == pytest.approx(choice.logprobs.token_logprobs, abs=1e-6)
    assert again["text"] == CONTEXT


def test_token_id_prompts_generate_as_their_text_does(served, loaded):
    srv, _ = served
    ids = loaded.tokenizer(CONTEXT)["input_ids"]
    by_text = srv.client().completions.create(model="a", prompt=CONTEXT, max_tokens=8, temperature=0)
    by_ids = srv.client().completions.create(model="a", prompt=ids, max_tokens=8, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    lp = srv.client().completions.create(model="a", prompt=ids, max_tokens=4, temperature=0, logprobs=2)
    assert lp.choices[0].text == by_text.choices[0].text[: len(lp.choices[0].text)]
    assert len(lp.choices[0].logprobs.token_logprobs) == lp.usage.completion_tokens


def test_chat_logprobs_in_the_new_shape(served):
    srv, _ = served
    out = srv.client().chat.completions.create(model="a", messages=[{"role": "user", "content": "What is FlowDesk?"}],
                                               max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
    content = out.choices[0].logprobs.content
    assert len(content) == out.usage.completion_tokens - (out.choices[0].finish_reason == "stop")
    for item in content:
        assert len(item.top_logprobs) == 3 and item.logprob <= 0
        assert math.isclose(item.logprob, item.top_logprobs[0].logprob, abs_tol=1e-6)  # greedy
        if not item.token.startswith("bytes:"):  # part of a UTF-8 character is shown as bytes:\\x..
            assert bytes(item.bytes).decode("utf-8") == item.token


@pytest.mark.parametrize("body, param, words", [
    ({"prompt": {"a": 1}}, "prompt", "a list of token ids"),
    ({"prompt": [1, "x"]}, "prompt", "a list of token ids"),
    ({"prompt": [[1, 2], [-3]]}, "prompt", "token-id lists"),
    ({"prompt": [10**9]}, "prompt", "vocabulary"),
    ({"prompt": "hi", "logprobs": 21}, "logprobs", "20"),
    ({"prompt": "hi", "logprobs": 1, "stream": True}, "stream", "stream"),
    ({"prompt": "hi", "max_tokens": -1}, "max_tokens", "0"),
])
def test_scoring_mistakes_are_plain_400s(served, body, param, words):
    srv, _ = served
    r = post(srv, "/v1/completions", **body)
    error = r.json()["error"]
    assert r.status_code == 400 and error["param"] == param and words in error["message"]
    assert ".str" not in error["message"] and "list[" not in error["message"]


def test_chat_top_logprobs_needs_logprobs(served):
    srv, _ = served
    with pytest.raises(openai.BadRequestError) as caught:
        srv.client().chat.completions.create(model="a", messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                             top_logprobs=2)
    assert caught.value.body["param"] == "top_logprobs"
    assert KEY  # the server needs the key like every other route (tests.e2e.test_serve)


class Ticket(BaseModel):
    """The builtin:tiny run is near random: only constrained decoding makes it answer in this shape."""

    category: Literal["billing", "bug", "other"]
    urgent: bool
    summary: str = Field(max_length=12)
    count: int  # lm-format-enforcer does not enforce minimum / maximum (docs/serve.md)


def test_parse_with_a_pydantic_schema_returns_a_valid_object(served):
    srv, _ = served
    out = srv.client().beta.chat.completions.parse(
        model="a", messages=[{"role": "user", "content": "File a ticket: the app crashes."}], response_format=Ticket,
        max_tokens=300, temperature=0)
    choice = out.choices[0]
    assert choice.finish_reason == "stop", repr(choice.message.content)
    assert isinstance(choice.message.parsed, Ticket)
    assert Ticket.model_validate_json(choice.message.content) == choice.message.parsed


def test_json_object_answers_parse_as_an_object_also_when_streamed(served):
    """The near-random tiny run writes one long string inside the object: within 200 tokens it may not
    close it (finish_reason "length", a truncated JSON, as OpenAI's); an answer that ends by itself parses.
    Either way the streamed answer is the same greedy text, and no raw control character is ever emitted
    (JSON forbids them inside strings; lm-format-enforcer lets a tab or U+0019 token through)."""
    srv, _ = served
    args = {"model": "a", "messages": [{"role": "user", "content": "Reply in JSON."}], "max_tokens": 200,
            "temperature": 0, "response_format": {"type": "json_object"}}
    out = srv.client().chat.completions.create(**args)
    content, finish = out.choices[0].message.content, out.choices[0].finish_reason
    assert content.lstrip().startswith("{")
    assert not [c for c in content.strip() if ord(c) < 0x20 and c not in "\n\r"]
    if finish == "stop":
        assert isinstance(json.loads(content), dict)
    else:
        assert finish == "length"
    text = "".join(c.choices[0].delta.content or "" for c in srv.client().chat.completions.create(**args, stream=True)
                   if c.choices)
    assert text == content  # greedy: the same constrained answer


@pytest.mark.parametrize("fmt", [{"type": "yaml"}, {"type": "json_schema"}, {"type": "json_schema", "json_schema": {}}])
def test_bad_response_formats_are_400(served, fmt):
    srv, _ = served
    r = post(srv, "/v1/chat/completions", messages=[{"role": "user", "content": "hi"}], response_format=fmt)
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
