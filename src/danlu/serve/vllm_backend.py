"""The `vllm` backend: the same API over vLLM's AsyncLLMEngine on a CUDA machine, with vLLM's
own continuous batching and multi-LoRA (each adapter a LoRARequest; vLLM batches requests for
different adapters together). Imported only when `--backend vllm` is chosen; prompts are
rendered and tokenised by danlu (the run's own template) and passed as token ids.

Not exercised on the CPU machines danlu is developed on: tests/unit/serve/test_vllm_backend.py
drives it with a stand-in for vllm's engine (deltas, stop/length, n, cancel → abort, adapters)."""

from __future__ import annotations

import asyncio
import itertools
import logging

from danlu.errors import UserError
from danlu.serve.adapters import ModelEntry, Target, prepare_adapter
from danlu.serve.engine import EngineBusy, Event
from danlu.serve.errors import not_found

log = logging.getLogger(__name__)


def _import_vllm():
    try:
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError:
        raise UserError("--backend vllm needs vLLM, which is not installed", where="--backend",
                        hint="on a CUDA machine: pip install vllm; or use --backend hf (CPU or GPU)") from None
    return vllm, LoRARequest


class VllmRequest:
    """One prompt's generation in vLLM; events go to the API's queue."""

    def __init__(self, backend, entry: ModelEntry, prompt, n, params, queue, offset):
        self.backend, self.n, self.offset, self.queue = backend, n, offset, queue
        self.id = f"danlu-{next(backend.ids)}"
        self.task = asyncio.get_running_loop().create_task(self._run(entry, prompt, params))

    async def _run(self, entry, prompt, params) -> None:
        b = self.backend
        sampling = b.vllm.SamplingParams(
            n=self.n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
            seed=params.seed, stop=list(params.stop) or None, stop_token_ids=list(entry.stop_token_ids),
            presence_penalty=params.presence_penalty, frequency_penalty=params.frequency_penalty)
        sent = [""] * self.n  # cumulative text already forwarded, per choice
        done = [False] * self.n
        b.running += self.n
        try:
            stream = b.engine.generate({"prompt_token_ids": prompt}, sampling, self.id,
                                       lora_request=b.lora_request(entry))
            async for out in stream:
                for o in out.outputs:
                    self._forward(o, sent, done)
        except asyncio.CancelledError:
            await b.engine.abort(self.id)
            raise
        except Exception as exc:  # noqa: BLE001 — reported to the client as a 500 event
            log.exception("vLLM generation failed")
            for i in range(self.n):
                if not done[i]:
                    self.queue.put_nowait(Event(self.offset + i, finish="error", error=f"generation failed: {exc}"))
        finally:
            b.running -= self.n

    def _forward(self, o, sent: list[str], done: list[bool]) -> None:
        i = o.index
        if done[i]:
            return
        piece, sent[i] = o.text[len(sent[i]):], o.text
        finish = o.finish_reason if o.finish_reason in ("stop", "length") else ("stop" if o.finish_reason else None)
        if piece or finish:
            self.queue.put_nowait(Event(self.offset + i, piece, finish=finish, tokens=len(o.token_ids)))
        done[i] = finish is not None

    def cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()


class VllmBackend:
    name = "vllm"

    def __init__(self, target: Target, adapters: list[tuple[str, str]], *, max_batch: int = 256,
                 max_waiting: int = 1024):
        from transformers import AutoConfig

        from danlu.models.load import resolve_model_path

        self.vllm, self.LoRARequest = _import_vllm()
        self.base, self.adapters = target.base, {}
        self.max_waiting, self.running, self.ids, self.lora_ids = max_waiting, 0, itertools.count(), itertools.count(1)
        for name, path in target.adapters + adapters:
            self._register(prepare_adapter(name, path, self.base, self.adapters))
        path = resolve_model_path(target.base_path)
        self.max_context = int(getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", 2048))
        args = self.vllm.AsyncEngineArgs(model=path, enable_lora=True, max_loras=8, max_lora_rank=self._max_rank(),
                                         max_num_seqs=max_batch, max_model_len=self.max_context)
        self.engine = self.vllm.AsyncLLMEngine.from_engine_args(args)

    def _register(self, entry: ModelEntry) -> None:
        entry.info = {**entry.info, "lora_int_id": next(self.lora_ids)}
        self.adapters[entry.id] = entry

    def _max_rank(self) -> int:
        import json
        from pathlib import Path

        ranks = [json.loads((Path(e.path) / "adapter_config.json").read_text()).get("r", 16)
                 for e in self.adapters.values()]
        return max([16, *ranks])

    def lora_request(self, entry: ModelEntry):
        if entry.kind != "adapter":
            return None
        return self.LoRARequest(entry.id, entry.info["lora_int_id"], entry.path)

    def models(self) -> list[ModelEntry]:
        return [self.base, *self.adapters.values()]

    def resolve(self, name: str) -> ModelEntry:
        if name == self.base.id:
            return self.base
        if name in self.adapters:
            return self.adapters[name]
        raise not_found(f"the model {name!r} does not exist on this server", param="model", code="model_not_found")

    def submit(self, entry, prompt, n, params, loop, queue, offset: int = 0):
        if self.running + n > self.max_waiting:
            raise EngineBusy(f"{self.running} sequences in flight (limit {self.max_waiting})")
        return VllmRequest(self, entry, prompt, n, params, queue, offset)

    def stats(self) -> dict:
        return {"backend": self.name, "models": len(self.models()), "active": self.running}

    def start(self) -> None:
        pass

    def stop(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown:
            shutdown()

    async def add_adapter(self, name: str, path: str):
        entry = await asyncio.to_thread(prepare_adapter, name, path, self.base, dict(self.adapters))
        self._register(entry)
        add = getattr(self.engine, "add_lora", None)  # eager load where vLLM offers it; else on first use
        if add:
            await add(self.lora_request(entry))
        return entry, 0.0

    async def remove_adapter(self, name: str) -> None:
        if name not in self.adapters:
            raise not_found(f"no adapter named {name!r} is loaded", param="name", code="model_not_found")
        entry = self.adapters.pop(name)
        remove = getattr(self.engine, "remove_lora", None)
        if remove:
            await remove(entry.info["lora_int_id"])
