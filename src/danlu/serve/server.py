"""Build a backend and the app from `danlu serve` arguments, and run it with uvicorn."""

from __future__ import annotations

import logging

from danlu.errors import UserError
from danlu.serve.app import ServeSettings, create_app
from danlu.serve.security import bind_warning

log = logging.getLogger(__name__)
BACKENDS = ("hf", "vllm")


def parse_adapters(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--adapter {item!r} is not NAME=PATH", where="--adapter",
                            hint="e.g. --adapter support=runs/support (a run directory or an adapter folder)")
        out.append((name, path))
    return out


def build_backend(target: str, adapters: list[tuple[str, str]], settings: ServeSettings):
    from danlu.serve.adapters import open_target

    if settings.backend not in BACKENDS:
        raise UserError(f"unknown backend {settings.backend!r}", where="--backend", hint="choose hf or vllm")
    opened = open_target(target)
    if settings.backend == "vllm":
        from danlu.serve.vllm_backend import VllmBackend

        return VllmBackend(opened, adapters, max_batch=settings.max_batch, max_waiting=settings.max_waiting)
    from danlu.serve.hf_backend import HFBackend

    return HFBackend(opened, adapters, max_batch=settings.max_batch, max_waiting=settings.max_waiting,
                     device=settings.device)


def check_settings(settings: ServeSettings) -> None:
    if settings.threads is not None and settings.threads < 1:
        raise UserError("threads must be at least 1", where="--threads")
    for folder in settings.image_dirs:
        from pathlib import Path

        if not Path(folder).expanduser().is_dir():
            raise UserError(f"--image-dir {folder}: no such folder", where="--image-dir")
    for name in ("max_batch", "max_waiting", "max_tokens", "max_n", "max_prompts", "max_body_bytes",
                 "max_image_bytes", "max_images"):
        if getattr(settings, name) < 1:
            raise UserError(f"{name} must be at least 1", where="--" + name.replace("_", "-"))
    if not 0 <= settings.port <= 65535:
        raise UserError(f"port {settings.port} is not a TCP port", where="--port")
    if settings.api_key is not None and len(settings.api_key) < 8:
        raise UserError("the API key is shorter than 8 characters", where="--api-key",
                        hint="use a long random key, e.g. python -c 'import secrets; print(secrets.token_urlsafe())'")


def serve(target: str, adapters: list[str], settings: ServeSettings) -> None:
    import uvicorn

    check_settings(settings)
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    warning = bind_warning(settings.host, settings.api_key)
    if warning:
        log.warning(warning)
    backend = build_backend(target, parse_adapters(adapters), settings)
    app = create_app(backend, settings)
    names = ", ".join(m.id for m in backend.models())
    log.info("serving %s on http://%s:%d/v1 (backend %s; models: %s)%s", target, settings.host, settings.port,
             backend.name, names, "; API key required" if settings.api_key else "")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)
