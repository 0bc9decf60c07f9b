"""Continuous batching over a transformers model (the `hf` backend), on CPU or GPU.

One worker thread owns the model. Each loop it runs queued admin commands (load / remove an
adapter), drops the rows of requests whose client went away, admits waiting sequences into free
slots (one prefill forward for the newcomers, whose KV cache is then merged into the running
batch), and runs one decoding step for every running row. A request of n choices is n rows.

Rows for different LoRA adapters share a batch: PEFT routes each row through its own adapter
(`adapter_names=`, "__base__" for the base). Adapters PEFT cannot mix (DoRA) run in batches of
their own, switched with set_adapter between batches."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass

from danlu.serve import kv
from danlu.serve.sampling import SamplingParams, choose
from danlu.serve.text import TextStream

log = logging.getLogger(__name__)
MIX = "__mix__"  # batch key of rows PEFT can mix in one forward (base + LoRA)
BASE = "__base__"  # PEFT's adapter name for "no adapter" in adapter_names
RETRY = object()  # a command returning this runs again at the next loop


class EngineBusy(Exception):
    """The waiting queue is full (the API answers 429)."""


@dataclass
class Event:
    choice: int
    text: str = ""
    finish: str | None = None  # stop | length | error
    tokens: int = 0  # completion tokens of this choice so far
    error: str | None = None
    ids: tuple[int, ...] = ()  # on the finishing event: the generated token ids (no final stop token)


class Request:
    """One API request: n rows sharing a prompt. Events reach the caller's asyncio loop."""

    _ids = itertools.count()

    def __init__(self, prompt: list[int], n: int, params: SamplingParams, adapter: str | None,
                 stop_token_ids, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue | None = None,
                 offset: int = 0):
        self.id = next(self._ids)
        self.prompt, self.n, self.params, self.adapter = prompt, n, params, adapter
        self.stop_ids = frozenset(stop_token_ids)
        # several requests (one per prompt of a completions call) may share one queue; their
        # choices are numbered from `offset`
        self.loop, self.queue, self.offset = loop, queue or asyncio.Queue(), offset
        self.cancelled = False
        self.submitted = time.perf_counter()

    def emit(self, event: Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the caller's loop is closed
            self.cancelled = True

    def cancel(self) -> None:
        """The client went away: the engine frees this request's rows at its next step."""
        self.cancelled = True

    async def events(self):
        left = self.n
        while left:
            event = await self.queue.get()
            left -= event.finish is not None
            yield event


class Sequence:
    """One row: one choice of one request."""

    def __init__(self, request: Request, index: int, tokenizer, device):
        import torch

        self.request, self.index, self.params = request, index, request.params
        self.choice = request.offset + index
        self.tokens: list[int] = []
        self.stream = TextStream(tokenizer, request.params.stop)
        self.generator = None
        if self.params.temperature > 0:
            self.generator = torch.Generator(device=device)
            seed = self.params.seed
            self.generator.manual_seed(seed + index if seed is not None else int.from_bytes(_random_bytes(), "big"))

    def push(self, token: int) -> bool:
        """Add a generated token and emit its text; True when this row is finished."""
        self.tokens.append(token)
        if token in self.request.stop_ids:
            return self._finish(self.stream.flush(), "stop")
        piece, hit = self.stream.push(token)
        if hit:
            return self._finish(piece, "stop")
        if len(self.tokens) >= self.params.max_tokens:
            return self._finish(piece + self.stream.flush(), "length")
        if piece:
            self.request.emit(Event(self.choice, piece, tokens=len(self.tokens)))
        return False

    def finish(self, reason: str) -> bool:
        """End this row now with what it holds (generate ended it from outside)."""
        return self._finish(self.stream.flush(), reason)

    def _finish(self, piece: str, reason: str) -> bool:
        ids = self.tokens[:-1] if self.tokens and self.tokens[-1] in self.request.stop_ids else self.tokens
        self.request.emit(Event(self.choice, piece, finish=reason, tokens=len(self.tokens), ids=tuple(ids)))
        return True


def fail_rows(rows: list[Sequence], exc: BaseException) -> None:
    """Finish rows with an error event (their generation failed)."""
    log.error("generation failed: %s", exc, exc_info=exc)
    for s in rows:
        s.request.emit(Event(s.choice, finish="error", tokens=len(s.tokens), error=f"generation failed: {exc}"))


def _random_bytes() -> bytes:
    import os

    return os.urandom(7)


class Engine:
    def __init__(self, model, tokenizer, *, max_batch: int = 16, max_waiting: int = 256):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.solo: set[str] = set()  # adapters that cannot share a batch with others (DoRA)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._waiting: deque[Sequence] = deque()
        self._commands: deque[tuple] = deque()
        self._lock, self._wake = threading.Lock(), threading.Event()
        self._stopped = False
        self.active: list[Sequence] = []
        self.joining: list[Sequence] = []  # rows being prefilled (failed with the batch on an error)
        self.cache = self.mask = self.pos = self.pending = None
        self.key: str | None = None
        self.counters = {"requests": 0, "cancelled": 0, "steps": 0, "tokens": 0, "adapter_switches": 0,
                         "max_rows_in_step": 0, "mixed_adapter_steps": 0}
        self._thread = threading.Thread(target=self._run, name="danlu-engine", daemon=True)

    # ---- called from the API side -------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=10)

    def submit(self, prompt: list[int], n: int, params: SamplingParams, adapter: str | None, stop_token_ids,
               loop, queue=None, offset: int = 0) -> Request:
        request = Request(prompt, n, params, adapter, stop_token_ids, loop, queue, offset)
        with self._lock:
            if len(self._waiting) + n > self.max_waiting:
                raise EngineBusy(f"{len(self._waiting)} sequences are waiting (limit {self.max_waiting})")
            self._waiting.extend(Sequence(request, i, self.tokenizer, self.device) for i in range(n))
            self.counters["requests"] += 1
        self._wake.set()
        return request

    def submit_call(self, prompt: list[int], n: int, params: SamplingParams, adapter: str | None, stop_token_ids,
                    loop, queue=None, offset: int = 0, *, work) -> Request:
        """A request whose n choices run as one command on the worker thread, `work(engine, request,
        rows)`, not in the spliced batch (a vision-language prompt: danlu.serve.vision.run)."""
        request = Request(prompt, n, params, adapter, stop_token_ids, loop, queue, offset)
        rows = [Sequence(request, i, self.tokenizer, self.device) for i in range(n)]
        with self._lock:
            if len(self._commands) + len(self._waiting) + n > self.max_waiting:
                raise EngineBusy(f"{len(self._commands)} requests are waiting (limit {self.max_waiting})")
            self.counters["requests"] += 1
        self.call(lambda engine: work(engine, request, rows))
        return request

    def call(self, fn) -> Future:
        """Run fn(engine) on the worker thread between steps (adapter load / removal)."""
        future: Future = Future()
        with self._lock:
            self._commands.append((fn, future))
        self._wake.set()
        return future

    def score(self, ids: list[int], adapter: str | None, top: int) -> Future:
        """Log-probabilities of ids[1:] under the model (one forward on the worker thread,
        between decoding steps): a Future of danlu.serve.scoring.Scored."""
        from danlu.serve.scoring import score_ids

        return self.call(lambda engine: score_ids(engine.model, ids, top, len(engine.tokenizer),
                                                  engine._adapter_kwargs_for([adapter])))

    def stats(self) -> dict:
        return {"active": len(self.active), "waiting": len(self._waiting), "max_batch": self.max_batch,
                **self.counters}

    def uses(self, adapter: str) -> bool:
        with self._lock:
            waiting = any(s.request.adapter == adapter for s in self._waiting)
        return waiting or any(s.request.adapter == adapter for s in self.active)

    @property
    def device(self):
        return self.model.device

    # ---- the worker thread ---------------------------------------------------------------------
    def _run(self) -> None:
        import torch

        while not self._stopped:
            with torch.no_grad():  # adapter weights loaded here must stay ordinary tensors
                self._run_commands()
            self._drop_cancelled()
            try:
                with torch.inference_mode():
                    self._admit()
                    if self.active:
                        self._step()
            except Exception as exc:  # noqa: BLE001 — a failed forward fails its requests, not the server
                self._fail_all(exc)
            if not self.active:
                self._wake.wait(0.05)
                self._wake.clear()

    def _run_commands(self) -> None:
        with self._lock:
            commands, self._commands = list(self._commands), deque()
        for fn, future in commands:
            try:
                result = fn(self)
            except Exception as exc:  # noqa: BLE001 — reported to the caller through the future
                future.set_exception(exc)
                continue
            if result is RETRY:
                with self._lock:
                    self._commands.append((fn, future))
            else:
                future.set_result(result)

    def _batch_key(self, adapter: str | None) -> str:
        return adapter if adapter in self.solo else MIX

    def _drop_cancelled(self) -> None:
        with self._lock:
            before = len(self._waiting)
            self._waiting = deque(s for s in self._waiting if not s.request.cancelled)
            dropped = before - len(self._waiting)
        gone = [i for i, s in enumerate(self.active) if s.request.cancelled]
        if gone:
            self._remove(gone)
        self.counters["cancelled"] += dropped + len(gone)

    def _admit(self) -> None:
        free = self.max_batch - len(self.active)
        take: list[Sequence] = []
        with self._lock:
            while self._waiting and len(take) < free:
                key = self._batch_key(self._waiting[0].request.adapter)
                current = self.key if self.active else (self._batch_key(take[0].request.adapter) if take else key)
                if key != current:
                    break  # FIFO: the next batch starts with it
                take.append(self._waiting.popleft())
        if take:
            self.joining = take
            self._prefill(take)
            self.joining = []

    def _adapter_kwargs(self, rows: list[Sequence]) -> dict:
        return self._adapter_kwargs_for([s.request.adapter for s in rows])

    def _adapter_kwargs_for(self, adapters: list[str | None]) -> dict:
        """Forward kwargs routing each row through its adapter (or switching a solo adapter in;
        the next decoding step switches back to its own batch's)."""
        if not hasattr(self.model, "peft_config"):
            return {}
        key = self._batch_key(adapters[0])
        if key == MIX:
            return {"adapter_names": [a or BASE for a in adapters]}
        if self.model.active_adapter != key:
            self.model.set_adapter(key, inference_mode=True)
            self.counters["adapter_switches"] += 1
        return {}

    def _prefill(self, rows: list[Sequence]) -> None:
        """One forward over the newcomers' prompts (left-padded), then they join the batch."""
        import torch
        from transformers import DynamicCache

        width = max(len(s.request.prompt) for s in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, s in enumerate(rows):
            n = len(s.request.prompt)
            ids[i, width - n:] = torch.tensor(s.request.prompt)
            mask[i, width - n:] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=DynamicCache(),
                         use_cache=True, logits_to_keep=1, **self._adapter_kwargs(rows))
        first = choose(self._logits(out), rows)
        self.key = self._batch_key(rows[0].request.adapter)
        self.cache, self.mask = kv.merge(self.cache, self.mask, out.past_key_values, mask)
        new_pos, new_pending = mask.sum(1), torch.tensor(first, device=self.device)
        self.pos = new_pos if self.pos is None else torch.cat([self.pos, new_pos])
        self.pending = new_pending if self.pending is None else torch.cat([self.pending, new_pending])
        offset = len(self.active)
        self.active.extend(rows)
        self._advance(first, range(offset, offset + len(rows)))

    def _step(self) -> None:
        """One decoding step for every running row: feed each its pending token."""
        import torch

        rows = len(self.active)
        mask = torch.cat([self.mask, self.mask.new_ones((rows, 1))], dim=1)
        out = self.model(input_ids=self.pending[:, None], attention_mask=mask, position_ids=self.pos[:, None],
                         past_key_values=self.cache, use_cache=True, **self._adapter_kwargs(self.active))
        self.cache, self.mask, self.pos = out.past_key_values, mask, self.pos + 1
        tokens = choose(self._logits(out), self.active)
        self.pending = torch.tensor(tokens, device=self.device)
        self.counters["steps"] += 1
        self.counters["max_rows_in_step"] = max(self.counters["max_rows_in_step"], rows)
        self.counters["mixed_adapter_steps"] += len({s.request.adapter for s in self.active}) > 1
        self._advance(tokens, range(rows))
        if self.active:
            self.cache, self.mask = kv.trim_left(self.cache, self.mask)

    def _logits(self, out):
        # (B, V) fp32; rows past the tokenizer (vocab padding) are never chosen
        return out.logits[:, -1, : len(self.tokenizer)].float()

    def _advance(self, tokens: list[int], indices) -> None:
        finished = [i for i, t in zip(indices, tokens) if self.active[i].push(t)]
        self.counters["tokens"] += len(tokens)
        if finished:
            self._remove(finished)

    def _remove(self, indices: list[int]) -> None:
        drop = set(indices)
        keep = [i for i in range(len(self.active)) if i not in drop]
        if not keep:
            self.active, self.cache, self.mask, self.pos, self.pending, self.key = [], None, None, None, None, None
            return
        self.cache, self.mask = kv.select(self.cache, self.mask, keep)
        self.pos, self.pending = self.pos[keep], self.pending[keep]
        self.active = [self.active[i] for i in keep]

    def _fail_all(self, exc: Exception) -> None:
        rows = self.active + self.joining
        log.exception("generation failed; failing %d rows", len(rows), exc_info=exc)
        for s in rows:
            s.request.emit(Event(s.choice, finish="error", tokens=len(s.tokens), error=f"generation failed: {exc}"))
        self.joining = []
        self.active, self.cache, self.mask, self.pos, self.pending, self.key = [], None, None, None, None, None
