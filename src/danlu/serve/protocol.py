"""OpenAI request models (bounded, validated) and response builders for chat completions,
completions and models.

Requests accept unknown fields (clients send `user`, `store`, `metadata` ...) and ignore them;
fields danlu cannot honour yet (`functions`, `logit_bias` ...) are refused with a 400 naming the
field, never silently dropped. To add a feature, add its fields here, take it off UNSUPPORTED,
and extend `ChatMessage.for_template` and the builders; messages keep extra keys (tool_calls,
tool_call_id) for the chat template. Tool calls: `tools` / `tool_choice` here, checked and
rendered in `danlu.serve.toolcalls`."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Stop = Annotated[str, Field(min_length=1, max_length=256)]
# request fields refused until danlu implements them (the value that means "off" is accepted)
UNSUPPORTED = {"functions": (None, []), "function_call": (None, "none"), "logit_bias": (None, {}),
               "best_of": (None, 1), "suffix": (None, ""), "response_format": (None, {"type": "text"})}
MAX_LOGPROBS = 20
PROMPT_SHAPES = "give a string, a list of strings, a list of token ids, or a list of token-id lists"


class OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    def unsupported(self) -> str | None:
        """The first field set to a value danlu cannot honour."""
        extra = self.model_extra or {}
        for key, off in UNSUPPORTED.items():
            if key in extra and extra[key] not in off:
                return key
        return None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(..., min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(BaseModel):
    """An image (danlu.serve.images: a base64 data URL or a path in an --image-dir folder)."""
    model_config = ConfigDict(extra="forbid")
    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[Part] | None = None
    name: str | None = Field(None, max_length=256)

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content if isinstance(p, TextPart))
        return self.content or ""

    def image_parts(self) -> list[tuple[int, ImagePart]]:
        """(index in content, part) of each image."""
        if not isinstance(self.content, list):
            return []
        return [(i, p) for i, p in enumerate(self.content) if isinstance(p, ImagePart)]

    def for_template(self) -> dict:
        """The dict a chat template sees (OpenAI's developer role is a system message there)."""
        message = {**(self.model_extra or {}), "role": "system" if self.role == "developer" else self.role,
                   "content": self.text()}
        if self.name:
            message["name"] = self.name
        return message


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Sampling(OpenAIModel):
    model: str = Field(..., min_length=1, max_length=512)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=128)
    stop: Stop | list[Stop] | None = Field(None)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four(cls, stop):
        if isinstance(stop, list) and len(stop) > 4:
            raise ValueError("at most 4 stop sequences")
        return stop

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(..., max_length=1024)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[dict] | None = Field(None, max_length=128)
    tool_choice: str | dict | None = None
    logprobs: bool | None = Field(None, description="return the log-probability of each generated token")
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    response_format: dict | None = Field(None, description="text | json_object | json_schema (constrained decoding)")

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def _is_ids(value) -> bool:
    return isinstance(value, list) and bool(value) and all(type(t) is int and t >= 0 for t in value)


class CompletionRequest(_Sampling):
    # str | list[str] | list[int] | list[list[int]], checked by hand: a pydantic union would
    # name its members in the error (`prompt.str: ...`)
    prompt: Any = Field(...)
    max_tokens: int | None = Field(None, ge=0)  # 0: score the prompt only (with echo + logprobs)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, prompt):
        ok = isinstance(prompt, str) or (isinstance(prompt, list) and (
            all(isinstance(p, str) for p in prompt) or _is_ids(prompt) or all(_is_ids(p) for p in prompt)))
        if not ok:
            raise ValueError(PROMPT_SHAPES)
        return prompt

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: a string or a list of token ids."""
        if isinstance(self.prompt, str) or _is_ids(self.prompt):
            return [self.prompt]
        return list(self.prompt)

    @property
    def scored(self) -> bool:
        """Needs the log-probability path (echo, logprobs or max_tokens 0)."""
        return self.echo or self.logprobs is not None or self.max_tokens == 0

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else 16  # OpenAI's default for completions


class AdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=64)
    path: str = Field(..., min_length=1, max_length=4096)


def role_order_error(messages: list[ChatMessage]) -> tuple[str, int] | None:
    """(message, index) when the conversation is not system*, then user first, ending with the
    user or a tool result, with system messages only at the start."""
    if not messages:
        return "messages: must contain at least one message", 0
    started = False
    for i, m in enumerate(messages):
        if m.role in ("system", "developer"):
            if started:
                return f"messages[{i}]: a {m.role} message must come before the conversation starts", i
            continue
        if not started and m.role != "user":
            return f"messages[{i}]: the conversation must start with a user message, not {m.role}", i
        if m.role == "tool" and messages[i - 1].role not in ("assistant", "tool"):
            return f"messages[{i}]: a tool message must follow an assistant message", i
        if m.role != "user" and m.image_parts():
            return f"messages[{i}]: only user messages may carry images, not {m.role} messages", i
        if m.role == "user" and not m.text().strip() and not m.image_parts():
            return f"messages[{i}]: the user message is empty", i
        started = True
    if not started:
        return "messages: there is no user message", len(messages) - 1
    if messages[-1].role not in ("user", "tool"):
        return "messages: the last message must be from the user (or a tool result)", len(messages) - 1
    return None


# ---- responses ------------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_completion(rid: str, model: str, messages: list[dict], finishes: list[str], use: dict,
                    logprobs: list[dict] | None = None) -> dict:
    """messages: {"role": "assistant", "content", ["tool_calls"]} per choice."""
    logprobs = logprobs or [None] * len(messages)
    choices = [{"index": i, "message": m, "finish_reason": f, "logprobs": lp}
               for i, (m, f, lp) in enumerate(zip(messages, finishes, logprobs))]
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": use, "system_fingerprint": None}


def chat_chunk(rid: str, model: str, created: int, choice: int | None, delta: dict | None = None,
               finish: str | None = None, use: dict | None = None, with_usage: bool = False) -> dict:
    """One chat.completion.chunk; choice None = the usage-only chunk (empty choices)."""
    chunk = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
             "system_fingerprint": None, "choices": []}
    if choice is not None:
        chunk["choices"] = [{"index": choice, "delta": delta or {}, "finish_reason": finish, "logprobs": None}]
    if with_usage:
        chunk["usage"] = use
    return chunk


def completion(rid: str, model: str, texts: list[str], finishes: list[str], use: dict,
               logprobs: list[dict | None] | None = None) -> dict:
    logprobs = logprobs or [None] * len(texts)
    choices = [{"index": i, "text": t, "finish_reason": f, "logprobs": lp}
               for i, (t, f, lp) in enumerate(zip(texts, finishes, logprobs))]
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": use, "system_fingerprint": None}


def completion_chunk(rid: str, model: str, created: int, choice: int | None, text: str = "",
                     finish: str | None = None, use: dict | None = None, with_usage: bool = False) -> dict:
    chunk = {"id": rid, "object": "text_completion", "created": created, "model": model,
             "system_fingerprint": None, "choices": []}
    if choice is not None:
        chunk["choices"] = [{"index": choice, "text": text, "finish_reason": finish, "logprobs": None}]
    if with_usage:
        chunk["usage"] = use
    return chunk
