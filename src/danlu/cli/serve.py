"""danlu serve MODEL_OR_RUN [--adapter NAME=PATH ...] [--host 127.0.0.1] [--port 8000] [--api-key KEY]
[--backend hf|vllm]"""

from __future__ import annotations

import os

import typer


def register(app: typer.Typer) -> None:
    app.command("serve", help="An OpenAI-compatible API over a model or run, with many LoRA adapters on one base.")(
        serve)


def serve(
    target: str = typer.Argument(..., help="Run directory, adapter/ or model/ folder, exported model, hub id, "
                                 "or builtin:*"),
    adapter: list[str] = typer.Option(None, "--adapter", help="NAME=PATH: serve another LoRA adapter (repeatable)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; loopback unless you say otherwise."),
    port: int = typer.Option(8000, "--port"),
    api_key: str = typer.Option(None, "--api-key", help="Require 'Authorization: Bearer KEY' on every route but "
                                "/health. Default: $DANLU_API_KEY (keeps the key out of the process list)."),
    backend: str = typer.Option("hf", "--backend", help="hf (transformers; CPU or GPU) | vllm (GPU, if installed)"),
    device: str = typer.Option("auto", "--device", help="hf backend: auto | cpu | cuda | cuda:N"),
    max_batch: int = typer.Option(16, "--max-batch", help="Sequences decoded together."),
    max_waiting: int = typer.Option(256, "--max-waiting", help="Queued sequences before answering 429."),
    max_tokens: int = typer.Option(2048, "--max-tokens", help="Upper bound of max_tokens per choice."),
    max_n: int = typer.Option(8, "--max-n", help="Upper bound of n."),
    max_body_mb: float = typer.Option(1.0, "--max-body-mb", help="Largest request body (413 above)."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch (default: all cores). On a shared "
                                "machine, or for small models, 1-2 threads decode much faster."),
    image_dir: list[str] = typer.Option(None, "--image-dir", help="A folder whose images requests may name by "
                                        "path (repeatable; default: none, images come as base64 data URLs)."),
    max_image_mb: float = typer.Option(8.0, "--max-image-mb", help="Largest image in a request (400 above)."),
    max_images: int = typer.Option(8, "--max-images", help="Most images in one request."),
):
    from danlu.serve.app import ServeSettings
    from danlu.serve.server import serve as run

    settings = ServeSettings(host=host, port=port, api_key=api_key or os.environ.get("DANLU_API_KEY") or None,
                             backend=backend, device=device, max_batch=max_batch, max_waiting=max_waiting,
                             max_tokens=max_tokens, max_n=max_n, max_body_bytes=int(max_body_mb * (1 << 20)),
                             threads=threads, image_dirs=tuple(image_dir or ()),
                             max_image_bytes=int(max_image_mb * (1 << 20)), max_images=max_images)
    run(target, adapter or [], settings)
