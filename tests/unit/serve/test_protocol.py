"""Request validation: bounds, role order, unsupported fields, and the response shapes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from danlu.serve import protocol as P


def msgs(*roles):
    return [P.ChatMessage(role=r, content=f"{r} text") for r in roles]


@pytest.mark.parametrize("roles, problem", [
    ((), "at least one"),
    (("assistant", "user"), "must start with a user"),
    (("system",), "no user message"),
    (("user", "assistant"), "last message"),
    (("user", "system", "user"), "must come before"),
    (("system", "user", "tool"), "must follow an assistant"),
])
def test_wrong_role_order_is_named(roles, problem):
    found = P.role_order_error(msgs(*roles))
    assert found and problem in found[0]


@pytest.mark.parametrize("roles", [("user",), ("system", "user"), ("developer", "user"),
                                   ("user", "assistant", "user"), ("user", "assistant", "tool")])
def test_valid_role_orders(roles):
    assert P.role_order_error(msgs(*roles)) is None


def test_empty_user_message_is_refused():
    assert "empty" in P.role_order_error([P.ChatMessage(role="user", content="  ")])[0]


@pytest.mark.parametrize("field, value", [
    ("max_tokens", 0), ("max_tokens", -5), ("temperature", 2.5), ("temperature", -0.1), ("top_p", 0.0),
    ("top_p", 1.5), ("n", 0), ("n", 1000), ("presence_penalty", 3), ("seed", 2**64), ("stop", ["a"] * 5),
    ("stop", "x" * 300),
])
def test_out_of_bounds_values_are_rejected(field, value):
    with pytest.raises(ValidationError):
        P.ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], **{field: value})


def test_unsupported_fields_are_named_and_off_values_accepted():
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert P.ChatCompletionRequest(**base, functions=[{"name": "f"}]).unsupported() == "functions"
    assert P.ChatCompletionRequest(**base, logit_bias={"1": 5}).unsupported() == "logit_bias"
    assert P.ChatCompletionRequest(**base, logprobs=True, top_logprobs=3).unsupported() is None  # served now
    assert P.ChatCompletionRequest(**base, logprobs=False, functions=[], user="u1", store=False).unsupported() is None
    assert P.ChatCompletionRequest(**base, tools=[{"type": "function"}], tool_choice="auto").unsupported() is None


@pytest.mark.parametrize("prompt, prompts", [
    ("hi", ["hi"]), (["a", "b"], ["a", "b"]), ([1, 2, 3], [[1, 2, 3]]), ([[1, 2], [3]], [[1, 2], [3]]),
])
def test_completion_prompts_take_text_and_token_ids(prompt, prompts):
    assert P.CompletionRequest(model="m", prompt=prompt).prompts() == prompts


@pytest.mark.parametrize("prompt", [{"a": 1}, [1, "x"], [[1], []], [True, 2], [-1], 5, None, [[1], "a"]])
def test_malformed_prompts_get_one_plain_message(prompt):
    from fastapi.exceptions import RequestValidationError

    from danlu.serve.handlers import validation_error

    with pytest.raises(ValidationError) as caught:
        P.CompletionRequest(model="m", prompt=prompt)
    error = validation_error(RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in caught.value.errors()]))
    assert error.param == "prompt" and error.message == f"prompt: {P.PROMPT_SHAPES}"


def test_scoring_bounds():
    assert P.CompletionRequest(model="m", prompt="x", max_tokens=0).scored
    assert not P.CompletionRequest(model="m", prompt="x", max_tokens=3).scored
    for bad in ({"logprobs": 21}, {"logprobs": -1}, {"max_tokens": -1}):
        with pytest.raises(ValidationError):
            P.CompletionRequest(model="m", prompt="x", **bad)
    with pytest.raises(ValidationError):
        P.ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], top_logprobs=21)


def test_messages_keep_extra_keys_for_the_template_and_map_developer_to_system():
    m = P.ChatMessage(role="developer", content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                      tool_call_id="x1")
    assert m.for_template() == {"role": "system", "content": "ab", "tool_call_id": "x1"}


def test_parts_other_than_text_and_image_are_rejected():
    P.ChatMessage(role="user", content=[{"type": "image_url", "image_url": {"url": "http://x"}}])  # checked later
    for part in ({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
                 {"type": "image_url", "image_url": {"url": "x", "extra": 1}}, {"type": "image_url"}):
        with pytest.raises(ValidationError):
            P.ChatMessage(role="user", content=[part])


def test_chunk_shapes():
    chunk = P.chat_chunk("id1", "m", 1, 0, {"content": "hi"}, None, with_usage=True)
    assert chunk["object"] == "chat.completion.chunk" and chunk["usage"] is None
    assert chunk["choices"] == [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None, "logprobs": None}]
    last = P.chat_chunk("id1", "m", 1, None, use=P.usage(3, 4), with_usage=True)
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 7
    assert "usage" not in P.chat_chunk("id1", "m", 1, 0, {})
