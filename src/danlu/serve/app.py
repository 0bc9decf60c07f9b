"""The OpenAI-compatible routes over a backend (hf or vllm):

  GET  /health                      always open: {"status": "ok", ...engine figures}
  GET  /v1/models[/{id}]            the base model and every adapter
  POST /v1/chat/completions         messages through the chosen model's own chat template
  POST /v1/completions              raw prompts
  POST /v1/adapters                 {"name", "path"}: load a LoRA adapter at run time
  DELETE /v1/adapters/{name}

Every client mistake is a 4xx in OpenAI's error shape; a request is fully validated (model,
roles, lengths, limits) before anything is queued, so a stream never starts for a bad request.
(FastAPI reads the annotations of the routes, so fastapi is imported at module level here.)"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from danlu.chat.messages import RowError
from danlu.chat.templates import ChatTemplate
from danlu.serve import protocol as P
from danlu.serve import vision as V
from danlu.serve.engine import EngineBusy
from danlu.serve.errors import APIError, bad_request
from danlu.serve.images import ImagePolicy
from danlu.serve.sampling import SamplingParams
from danlu.serve.structured import constraint_for
from danlu.serve.toolcalls import ToolStream, answer, template_messages, tool_request

log = logging.getLogger(__name__)


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    backend: str = "hf"
    device: str = "auto"
    max_batch: int = 16  # rows decoded together
    max_waiting: int = 256  # queued rows before 429
    max_tokens: int = 2048  # per choice
    max_n: int = 8
    max_prompts: int = 16  # prompts in one /v1/completions call
    max_body_bytes: int = 1 << 20
    threads: int | None = None  # torch CPU threads (None: torch's default)
    image_dirs: tuple[str, ...] = ()  # folders whose images a request may name by path
    max_image_bytes: int = 8 << 20
    max_images: int = 8  # per request

    @property
    def image_policy(self) -> ImagePolicy:
        return ImagePolicy(tuple(Path(d) for d in self.image_dirs), max_bytes=self.max_image_bytes,
                           max_images=self.max_images)


class Generation:
    """The engine requests of one API call (one per prompt), their events on one queue."""

    def __init__(self, backend, entry, prompts: list[list[int]], n: int, params: SamplingParams):
        loop, self.queue = asyncio.get_running_loop(), asyncio.Queue()
        self.requests, self.total = [], n * len(prompts)
        try:
            for i, ids in enumerate(prompts):
                self.requests.append(backend.submit(entry, ids, n, params, loop, self.queue, offset=i * n))
        except EngineBusy as exc:
            self.cancel()
            raise APIError(429, f"the server is busy ({exc}); retry shortly", code="rate_limit_exceeded") from None

    async def events(self):
        left = self.total
        while left:
            event = await self.queue.get()
            left -= event.finish is not None
            yield event

    def cancel(self) -> None:
        for r in self.requests:
            r.cancel()


def sse(data: dict | str) -> str:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n"


def create_app(backend, settings: ServeSettings):
    from danlu.serve.handlers import install_error_handlers
    from danlu.serve.security import Guard

    @asynccontextmanager
    async def lifespan(_app):
        backend.start()
        try:
            yield
        finally:
            backend.stop()

    app = FastAPI(title="danlu serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    install_error_handlers(app)

    @app.get("/health")
    async def health():
        return {"status": "ok", **backend.stats()}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [m.card(backend.base.id) for m in backend.models()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        return backend.resolve(model_id).card(backend.base.id)

    @app.post("/v1/chat/completions")
    async def chat(body: P.ChatCompletionRequest, request: Request):
        entry, ids, params, tools = prepare_chat(backend, settings, body)
        params.constraint = await constraint_for(backend, entry, body.response_format)
        if params.constraint is not None and tools.tools:
            raise bad_request("response_format cannot be combined with tools yet", param="response_format")
        return await respond(request, backend, entry, [ids], body, params, chat=True, tools=tools.parse)

    @app.post("/v1/completions")
    async def completions(body: P.CompletionRequest, request: Request):
        entry, prompts, params = prepare_completion(backend, settings, body)
        if body.scored:
            return await scored_completion(request, backend, entry, prompts, body, params)
        return await respond(request, backend, entry, prompts, body, params, chat=False)

    @app.post("/v1/adapters")
    async def add_adapter(body: P.AdapterRequest):
        entry, ms = await backend.add_adapter(body.name, body.path)
        return {**entry.card(backend.base.id), "load_ms": round(ms, 2)}

    @app.delete("/v1/adapters/{name}")
    async def remove_adapter(name: str):
        await backend.remove_adapter(name)
        return {"id": name, "object": "model", "deleted": True}

    return Guard(app, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes)


# ---- request preparation ----------------------------------------------------------------------
def _common_checks(body, settings: ServeSettings) -> None:
    field = body.unsupported()
    if field:
        raise bad_request(f"{field} is not supported by danlu serve yet", param=field, code="unsupported_parameter")
    if body.stream_options is not None and not body.stream:
        raise bad_request("stream_options is only allowed when stream is true", param="stream_options")
    if body.n > settings.max_n:
        raise bad_request(f"n={body.n} is above this server's limit of {settings.max_n}", param="n")


def _params(body, settings: ServeSettings, prompt_len: int, max_context: int, param: str) -> SamplingParams:
    room = max_context - prompt_len
    want = body.requested_max_tokens()
    if room < (0 if want == 0 else 1):
        raise bad_request(f"the prompt is {prompt_len} tokens; this model's context is {max_context} tokens",
                          param=param, code="context_length_exceeded")
    if want is None:
        want = min(settings.max_tokens, room)
    if want > settings.max_tokens:
        raise bad_request(f"max_tokens={want} is above this server's limit of {settings.max_tokens}",
                          param="max_tokens")
    if want > room:
        raise bad_request(f"the prompt ({prompt_len} tokens) plus max_tokens ({want}) exceeds this model's context "
                          f"of {max_context} tokens", param="max_tokens", code="context_length_exceeded")
    return SamplingParams(max_tokens=want, temperature=body.temperature, top_p=body.top_p, seed=body.seed,
                          stop=body.stop_list(), presence_penalty=body.presence_penalty,
                          frequency_penalty=body.frequency_penalty)


def prepare_chat(backend, settings, body: P.ChatCompletionRequest):
    entry = backend.resolve(body.model)
    _common_checks(body, settings)
    problem = P.role_order_error(body.messages)
    if problem:
        raise bad_request(problem[0], param=f"messages[{problem[1]}]" if body.messages else "messages")
    if getattr(backend, "vision", False):
        return _prepare_vision_chat(backend, settings, body, entry)
    V.refuse_images(entry, body.messages)
    tools = tool_request(body)
    _logprob_checks(backend, body, wanted=bool(body.logprobs), param="logprobs")
    if body.top_logprobs and not body.logprobs:
        raise bad_request("top_logprobs needs logprobs: true", param="top_logprobs")
    messages = template_messages(body.messages)
    try:  # the training path: tools through the tokenizer's template, else danlu's text form
        text = ChatTemplate(entry.tokenizer, entry.id).render(messages, tools=tools.tools, add_generation_prompt=True)
    except RowError as exc:
        raise bad_request(str(exc), param="messages") from None
    ids = entry.tokenizer(text, add_special_tokens=False)["input_ids"]
    return entry, ids, _params(body, settings, len(ids), backend.max_context, "messages"), tools


def _prepare_vision_chat(backend, settings, body: P.ChatCompletionRequest, entry):
    """A chat request to a vision-language model: images decoded and checked, the prompt rendered
    by the model's processor (danlu.serve.vision)."""
    V.check_vision_request(body)
    prompt = V.render(entry.processor, V.conversation(body.messages, settings.image_policy))
    return entry, prompt, _params(body, settings, len(prompt), backend.max_context, "messages"), tool_request(body)


def prepare_completion(backend, settings, body: P.CompletionRequest):
    entry = backend.resolve(body.model)
    _common_checks(body, settings)
    if getattr(backend, "vision", False):
        raise bad_request(f"{entry.id!r} is a vision-language model; send its requests to /v1/chat/completions",
                          param="model", code="unsupported_for_vision_model")
    prompts = body.prompts()
    if not prompts or len(prompts) > settings.max_prompts:
        raise bad_request(f"prompt: give 1 to {settings.max_prompts} prompts", param="prompt")
    _logprob_checks(backend, body, wanted=body.scored, param="logprobs" if body.logprobs is not None else "echo")
    ids = [p if isinstance(p, list) else entry.tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    if any(not x for x in ids):
        raise bad_request("prompt: an empty prompt", param="prompt")
    vocab = len(entry.tokenizer)
    if any(t >= vocab for x in ids for t in x):
        raise bad_request(f"prompt: a token id is outside this model's vocabulary (0 to {vocab - 1})", param="prompt")
    params = _params(body, settings, max(len(x) for x in ids), backend.max_context, "prompt")
    return entry, ids, params


def _logprob_checks(backend, body, *, wanted: bool, param: str) -> None:
    if not wanted:
        return
    if not hasattr(backend, "score"):
        raise bad_request(f"{param} is served by the hf backend only (danlu serve --backend hf)", param=param,
                          code="unsupported_parameter")
    if body.stream:
        raise bad_request(f"{param} cannot be streamed yet; send it with stream: false", param="stream",
                          code="unsupported_parameter")


# ---- responses ----------------------------------------------------------------------------------
async def scored_completion(request, backend, entry, prompts, body, params):
    """echo / logprobs / max_tokens 0: generate (unless 0), then score prompt + answer in one
    forward pass per choice (danlu.serve.scoring)."""
    from danlu.serve.scoring import legacy_logprobs

    total = body.n * len(prompts)
    texts, finishes, tokens, gen_ids = [""] * total, ["length"] * total, [0] * total, [()] * total
    if params.max_tokens > 0:
        texts, finishes, tokens, gen_ids = await collect(request, Generation(backend, entry, prompts, body.n, params))
    originals, logprobs = body.prompts(), []
    for c in range(total):
        prompt = prompts[c // body.n]
        if body.echo:
            original = originals[c // body.n]
            texts[c] = (original if isinstance(original, str) else entry.tokenizer.decode(prompt)) + texts[c]
        if body.logprobs is None:
            logprobs.append(None)
            continue
        ids = list(prompt) + list(gen_ids[c])
        scored = await backend.score(entry, ids, body.logprobs)
        start = 0 if body.echo else len(prompt)
        logprobs.append(legacy_logprobs(entry.tokenizer, ids, scored, start))
    use = P.usage(sum(len(p) for p in prompts), sum(tokens))
    return P.completion(P.new_id("cmpl"), body.model, texts, finishes, use, logprobs)


async def _chat_logprobs(backend, entry, prompt: list[int], gen_ids, top: int) -> list[dict]:
    from danlu.serve.scoring import chat_logprobs

    out = []
    for ids in gen_ids:
        full = list(prompt) + list(ids)
        out.append(chat_logprobs(entry.tokenizer, full, await backend.score(entry, full, top), len(prompt)))
    return out


async def respond(request, backend, entry, prompts, body, params, *, chat: bool, tools: bool = False):
    """tools: parse each chat answer's tool calls (message.tool_calls, finish_reason tool_calls)."""
    gen = Generation(backend, entry, prompts, body.n, params)
    prompt_tokens = sum(len(p) for p in prompts)
    rid = P.new_id("chatcmpl" if chat else "cmpl")
    if body.stream:
        events = stream_events(gen, rid, body.model, prompt_tokens, body.include_usage, chat, tools)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    texts, finishes, tokens, gen_ids = await collect(request, gen)
    use = P.usage(prompt_tokens, sum(tokens))
    if not chat:
        return P.completion(rid, body.model, texts, finishes, use)
    if tools:
        messages, finishes = map(list, zip(*(answer(t, f) for t, f in zip(texts, finishes))))
    else:
        messages = [{"role": "assistant", "content": t} for t in texts]
    logprobs = None
    if body.logprobs:
        logprobs = await _chat_logprobs(backend, entry, prompts[0], gen_ids, body.top_logprobs or 0)
    return P.chat_completion(rid, body.model, messages, finishes, use, logprobs)


async def collect(request, gen: Generation):
    texts, finishes, tokens = [""] * gen.total, ["stop"] * gen.total, [0] * gen.total
    ids: list[tuple[int, ...]] = [()] * gen.total
    watcher = asyncio.create_task(_watch_disconnect(request, gen))
    try:
        async for ev in gen.events():
            if ev.error:
                raise APIError(500, ev.error, code="generation_failed")
            texts[ev.choice] += ev.text
            tokens[ev.choice] = ev.tokens
            if ev.finish:
                finishes[ev.choice] = ev.finish
                ids[ev.choice] = ev.ids
    finally:
        watcher.cancel()
        gen.cancel()  # a no-op when finished; frees the rows when this handler was cancelled
    return texts, finishes, tokens, ids


async def _watch_disconnect(request, gen: Generation) -> None:
    """A non-streaming client that hangs up frees its rows too."""
    while True:
        await asyncio.sleep(0.25)
        if await request.is_disconnected():
            gen.cancel()
            return


async def stream_events(gen: Generation, rid: str, model: str, prompt_tokens: int, with_usage: bool, chat: bool,
                        tools: bool = False):
    """chat.completion.chunk (or text_completion) events; one finish_reason per choice; an optional
    usage chunk; then `data: [DONE]`. Leaving early (the client hung up) frees the rows. With
    tools, each choice's text goes through a ToolStream (tool_calls deltas)."""
    created, tokens = int(time.time()), [0] * gen.total
    streams = [ToolStream() for _ in range(gen.total)] if tools else None
    try:
        if chat:
            for i in range(gen.total):
                yield sse(P.chat_chunk(rid, model, created, i, {"role": "assistant", "content": ""},
                                       with_usage=with_usage))
        async for ev in gen.events():
            tokens[ev.choice] = ev.tokens
            if ev.error:
                yield sse(APIError(500, ev.error, code="generation_failed").body())
                break
            if chat:
                for delta, finish in _chat_deltas(ev, streams):
                    yield sse(P.chat_chunk(rid, model, created, ev.choice, delta, finish, with_usage=with_usage))
            elif ev.text or ev.finish:
                yield sse(P.completion_chunk(rid, model, created, ev.choice, ev.text, ev.finish, with_usage=with_usage))
        if with_usage:
            use = P.usage(prompt_tokens, sum(tokens))
            build = P.chat_chunk if chat else P.completion_chunk
            yield sse(build(rid, model, created, None, use=use, with_usage=True))
        yield sse("[DONE]")
    finally:
        gen.cancel()



def _chat_deltas(ev, streams: list[ToolStream] | None):
    """(delta, finish_reason) pairs for one engine event of a chat stream."""
    if streams is None:
        deltas = [{"content": ev.text}] if ev.text else []
        finish = ev.finish
    else:
        stream = streams[ev.choice]
        deltas = stream.push(ev.text) if ev.text else []
        if ev.finish:
            deltas += stream.finish()
        finish = "tool_calls" if ev.finish and ev.finish != "error" and stream.calls else ev.finish
    out = [(d, None) for d in deltas]
    if ev.finish:
        out.append(({}, finish))
    return out
