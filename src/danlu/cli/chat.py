"""danlu chat RUN_DIR_OR_MODEL [--prompt TEXT] [--image PATH ...] — talk to a run with its own template
(a vision-language run or model takes images: --image, or /image PATH in the interactive chat)."""

from __future__ import annotations

import typer

from danlu.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("chat", help="Chat with a run, an artefact or a model (interactive, or --prompt for one answer).")(chat)


def chat(
    target: str = typer.Argument(..., help="Run directory, adapter/ or model/ folder, hub id, or builtin:*"),
    prompt: str = typer.Option(None, "--prompt", "-p", help="Ask one question, print the answer, exit."),
    system: str = typer.Option(None, "--system", help="System prompt."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    seed: int = typer.Option(None, "--seed"),
    image: list[str] = typer.Option(None, "--image", help="An image file shown with the first message "
                                    "(repeatable; vision-language runs and models only)."),
):
    from danlu.infer.generate import generate
    from danlu.infer.load import load_for_inference

    from danlu.models.chain import describe

    images = [check_image(p) for p in image or []]  # a wrong path fails before the model loads
    loaded = load_for_inference(target)
    if images and not loaded.vision:
        raise UserError(f"{target} is a text-only model; it cannot take --image",
                        where="--image", hint="give a vision-language run or model (e.g. builtin:tiny-vl)")
    if describe(loaded.info):
        typer.echo(f"adapter chain: {loaded.base_model} → {describe(loaded.info)}", err=True)
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    if prompt is not None:
        out = generate(loaded, [history + [user_turn(prompt, images)]], max_new_tokens=max_new_tokens,
                       temperature=temperature, seed=seed)
        typer.echo(out[0]["text"])
        return
    extra = ", /image PATH to show an image" if loaded.vision else ""
    typer.echo(f"chatting with {target} — empty line or Ctrl-D to quit, /reset to clear history{extra}", err=True)
    interactive(loaded, history, images, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)


def interactive(loaded, history: list[dict], images: list[str], **sampling) -> None:
    """The chat loop: /reset clears the history (keeping a system prompt), /image PATH adds an
    image to the next message (vision-language models)."""
    from danlu.infer.generate import stream

    system = history[:1]
    while True:
        try:
            line = input("you> ")
        except EOFError:
            break
        if not line.strip():
            break
        if line.strip() == "/reset":
            history = list(system)
            continue
        if loaded.vision and line.strip().startswith("/image "):
            try:
                images.append(check_image(line.strip()[len("/image "):].strip()))
            except UserError as exc:
                typer.echo(str(exc), err=True)
            continue
        history.append(user_turn(line, images))
        images = []
        typer.echo("bot> ", nl=False)
        pieces = []
        for piece in stream(loaded, history, **sampling):
            pieces.append(piece)
            typer.echo(piece, nl=False)
        typer.echo()
        history.append({"role": "assistant", "content": "".join(pieces)})


def check_image(path: str) -> str:
    from pathlib import Path

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(Path(path).expanduser()) as img:
            img.verify()
    except FileNotFoundError:
        raise UserError(f"no image file {path}", where="--image") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path} is not a readable image ({exc})", where="--image",
                        hint="give a PNG, JPEG, GIF, WEBP or BMP file") from None
    return str(Path(path).expanduser())


def user_turn(text: str, images: list[str]) -> dict:
    """A user message; with images, a list of parts (the images first, then the text)."""
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [*({"type": "image", "image": p} for p in images), {"type": "text", "text": text}]}
