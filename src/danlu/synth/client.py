"""The teacher: any OpenAI-compatible chat endpoint (vLLM, `danlu serve`, a cloud API) called
through the `openai` client, at most `concurrency` requests at a time, each retried with
exponential backoff (and the server's Retry-After, when it sends one) on 429, 5xx, timeouts and
dropped connections. The client's own retries are off so that every retry is counted here."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections import Counter
from dataclasses import dataclass

from danlu.errors import DanluError, UserError

log = logging.getLogger(__name__)
BASE_URL_ENV = ("DANLU_SYNTH_BASE_URL", "OPENAI_BASE_URL")
API_KEY_ENV = ("DANLU_SYNTH_API_KEY", "OPENAI_API_KEY")
MODEL_ENV = ("DANLU_SYNTH_MODEL",)


def _env(names: tuple[str, ...]) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


@dataclass
class TeacherConfig:
    base_url: str | None = None  # default: $DANLU_SYNTH_BASE_URL or $OPENAI_BASE_URL
    model: str | None = None  # default: $DANLU_SYNTH_MODEL
    api_key: str | None = None  # default: $DANLU_SYNTH_API_KEY or $OPENAI_API_KEY ("EMPTY" for local servers)
    concurrency: int = 8
    max_retries: int = 6
    timeout: float = 120.0  # seconds per request
    backoff: float = 1.0  # first retry waits about this long, doubling up to backoff_max
    backoff_max: float = 60.0
    temperature: float = 0.7
    max_tokens: int = 1024

    def resolved(self) -> TeacherConfig:
        cfg = TeacherConfig(**self.__dict__)
        cfg.base_url = cfg.base_url or _env(BASE_URL_ENV)
        cfg.model = cfg.model or _env(MODEL_ENV)
        cfg.api_key = cfg.api_key or _env(API_KEY_ENV) or "EMPTY"
        if not cfg.base_url:
            raise UserError("no endpoint given", where="--base-url",
                            hint="pass --base-url http://host:port/v1 or set DANLU_SYNTH_BASE_URL")
        if not cfg.model:
            raise UserError("no teacher model given", where="--model",
                            hint="pass --model NAME or set DANLU_SYNTH_MODEL")
        if cfg.concurrency < 1 or cfg.max_retries < 0:
            raise UserError("concurrency must be ≥ 1 and max_retries ≥ 0", where="--concurrency/--max-retries")
        return cfg


@dataclass
class Reply:
    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class RequestFailed(DanluError):
    """One request failed for good (retries spent, or refused as malformed)."""


class Teacher:
    """Async chat calls with a concurrency limit and retries; `stats` counts requests and retries."""

    def __init__(self, cfg: TeacherConfig):
        from openai import AsyncOpenAI

        self.cfg = cfg.resolved()
        self.client = AsyncOpenAI(base_url=self.cfg.base_url, api_key=self.cfg.api_key, max_retries=0,
                                  timeout=self.cfg.timeout)
        self.sem = asyncio.Semaphore(self.cfg.concurrency)
        self.stats: Counter = Counter()

    async def chat(self, messages: list[dict], *, temperature: float | None = None) -> Reply:
        async with self.sem:
            for attempt in range(self.cfg.max_retries + 1):
                self.stats["requests"] += 1
                try:
                    resp = await self.client.chat.completions.create(
                        model=self.cfg.model, messages=messages, max_tokens=self.cfg.max_tokens,
                        temperature=self.cfg.temperature if temperature is None else temperature)
                except Exception as exc:  # noqa: BLE001 — sorted into retry / give up / user error below
                    delay = self._retry_delay(exc, attempt)
                    await asyncio.sleep(delay)
                    continue
                return _reply(resp)
        raise AssertionError("unreachable")

    def _retry_delay(self, exc: Exception, attempt: int) -> float:
        """Seconds to wait before retrying `exc`, or raise if it is not worth retrying."""
        import openai

        status = getattr(exc, "status_code", None)
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)):
            raise UserError(f"the endpoint refused the request ({status}): {_message(exc)}", where=self.cfg.base_url,
                            hint="check --base-url, --model and --api-key") from None
        retryable = isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)) or status in (408, 409, 429) \
            or (status is not None and status >= 500)
        if not retryable:
            raise RequestFailed(f"request refused ({status}): {_message(exc)}") from None
        if attempt >= self.cfg.max_retries:
            self.stats["failed after retries"] += 1
            raise RequestFailed(f"gave up after {attempt + 1} attempts: {_message(exc)}") from None
        key = f"retries ({status})" if status else "retries (connection)"
        self.stats[key] += 1
        wait = min(self.cfg.backoff_max, self.cfg.backoff * 2 ** attempt) * (0.5 + random.random())
        hint = _retry_after(exc)
        if hint is not None:
            wait = min(self.cfg.backoff_max, max(hint, 0.0))
        log.debug("retrying in %.2fs after %s", wait, _message(exc))
        return wait

    async def close(self) -> None:
        await self.client.close()


def _reply(resp) -> Reply:
    choice = resp.choices[0] if resp.choices else None
    if choice is None:
        raise RequestFailed("the endpoint answered with no choices")
    usage = getattr(resp, "usage", None)
    return Reply(choice.message.content or "", choice.finish_reason,
                 getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
