"""The `hf` backend: one transformers model (CPU or GPU) with LoRA adapters loaded into it by
PEFT, driven by the continuous-batching Engine. The API talks to every backend through the
same small interface: models / resolve / submit / add_adapter / remove_adapter / stats."""

from __future__ import annotations

import asyncio
import logging
import time

from danlu.errors import UserError
from danlu.infer.load import contiguous_head_input
from danlu.infer.vision import is_vision_model, load_processor
from danlu.serve.adapters import ModelEntry, Target, attach, detach, prepare_adapter
from danlu.serve.engine import RETRY, Engine
from danlu.serve.errors import not_found
from danlu.serve.vision import VisionPrompt
from danlu.serve.vision import run as run_vision

log = logging.getLogger(__name__)


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(device: str):
    import torch

    # this CPU has no native bf16 (a bf16 matmul is ~400x slower than fp32): fp32 off the GPU
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class HFBackend:
    name = "hf"

    def __init__(self, target: Target, adapters: list[tuple[str, str]], *, max_batch: int = 16,
                 max_waiting: int = 256, device: str = "auto"):
        from danlu.models.load import load_model

        from danlu.progress import stages

        device = pick_device(device)
        trust = bool(target.base.info.get("trust_remote_code"))
        wanted = target.adapters + adapters
        with stages("serve: loading", ["base model", *(f"adapter {name}" for name, _ in wanted)]) as step:
            step.next("base model")
            self.vision = is_vision_model(target.base_path)
            model = load_model(target.base_path, task="image_text" if self.vision else "causal_lm",
                               dtype=pick_dtype(device), trust_remote_code=trust).to(device).eval()
            contiguous_head_input(model)
            self.base: ModelEntry = target.base
            self._with_processor(self.base, None)
            self.adapters: dict[str, ModelEntry] = {}
            text_config = model.config.get_text_config()
            self.max_context = int(getattr(text_config, "max_position_embeddings", 0) or 2048)
            self.engine = Engine(model, target.base.tokenizer, max_batch=max_batch, max_waiting=max_waiting)
            self._admin = asyncio.Lock()
            for name, path in wanted:  # before the engine thread starts: attach directly
                step.next(f"adapter {name}")
                entry = prepare_adapter(name, path, self.base, self.adapters)
                self.engine.model = attach(self.engine.model, entry)
                self._register(entry)

    # ---- models ------------------------------------------------------------------------------
    def models(self) -> list[ModelEntry]:
        return [self.base, *self.adapters.values()]

    def resolve(self, name: str) -> ModelEntry:
        if name == self.base.id:
            return self.base
        if name in self.adapters:
            return self.adapters[name]
        raise not_found(f"the model {name!r} does not exist on this server; GET /v1/models lists "
                        f"{', '.join(repr(m.id) for m in self.models())}", param="model", code="model_not_found")

    def _with_processor(self, entry: ModelEntry, fallback: str | None) -> None:
        """A VLM's entries render prompts with a processor (the entry's own, else the base's)."""
        if self.vision and entry.processor is None:
            entry.processor = load_processor(entry.path, fallback=fallback)

    def _register(self, entry: ModelEntry) -> None:
        self._with_processor(entry, self.base.path)
        self.adapters[entry.id] = entry
        if entry.dora:
            self.engine.solo.add(entry.id)

    # ---- generation --------------------------------------------------------------------------
    def submit(self, entry: ModelEntry, prompt: list[int], n: int, params, loop, queue, offset: int = 0):
        adapter = entry.id if entry.kind == "adapter" else None
        if isinstance(prompt, VisionPrompt):
            return self.engine.submit_call(prompt.ids, n, params, adapter, entry.stop_token_ids, loop, queue, offset,
                                           work=lambda engine, request, rows: run_vision(engine, request, rows, prompt))
        return self.engine.submit(prompt, n, params, adapter, entry.stop_token_ids, loop, queue, offset)

    async def score(self, entry: ModelEntry, ids: list[int], top: int):
        """Log-probabilities of ids[1:] (and the `top` most likely tokens at each position)."""
        adapter = entry.id if entry.kind == "adapter" else None
        return await asyncio.wrap_future(self.engine.score(ids, adapter, top))

    def stats(self) -> dict:
        return {"backend": self.name, "models": len(self.models()), **self.engine.stats()}

    def start(self) -> None:
        self.engine.start()

    def stop(self) -> None:
        self.engine.stop()

    # ---- adapters at run time ----------------------------------------------------------------
    async def add_adapter(self, name: str, path: str) -> tuple[ModelEntry, float]:
        """Validate (off the event loop), then load between two decoding steps. Returns the entry
        and the milliseconds the engine spent loading it."""
        async with self._admin:
            entry = await asyncio.to_thread(prepare_adapter, name, path, self.base, dict(self.adapters))

            def load(engine):
                t0 = time.perf_counter()
                engine.model = attach(engine.model, entry)
                return 1000 * (time.perf_counter() - t0)

            try:
                ms = await asyncio.wrap_future(self.engine.call(load))
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise UserError(f"cannot load adapter {name!r} from {path}: {exc}", where="path") from None
            self._register(entry)
            log.info("adapter %s loaded from %s in %.1f ms", name, entry.path, ms)
            return entry, ms

    async def remove_adapter(self, name: str) -> None:
        """New requests for it get 404 at once; its weights go when its running requests finish."""
        async with self._admin:
            if name not in self.adapters:
                raise not_found(f"no adapter named {name!r} is loaded", param="name", code="model_not_found")
            self.adapters.pop(name)

            def unload(engine):
                if engine.uses(name):
                    return RETRY
                engine.model = detach(engine.model, name)
                engine.solo.discard(name)
                return None

            await asyncio.wrap_future(self.engine.call(unload))
            log.info("adapter %s removed", name)
