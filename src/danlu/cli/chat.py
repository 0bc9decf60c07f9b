"""danlu chat RUN_DIR_OR_MODEL [--prompt TEXT] — talk to a run with its own template."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("chat", help="Chat with a run, an artefact or a model (interactive, or --prompt for one answer).")(chat)


def chat(
    target: str = typer.Argument(..., help="Run directory, adapter/ or model/ folder, hub id, or builtin:*"),
    prompt: str = typer.Option(None, "--prompt", "-p", help="Ask one question, print the answer, exit."),
    system: str = typer.Option(None, "--system", help="System prompt."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    seed: int = typer.Option(None, "--seed"),
):
    from danlu.infer.generate import generate, stream
    from danlu.infer.load import load_for_inference

    from danlu.models.chain import describe

    loaded = load_for_inference(target)
    if describe(loaded.info):
        typer.echo(f"adapter chain: {loaded.base_model} → {describe(loaded.info)}", err=True)
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    if prompt is not None:
        out = generate(loaded, [history + [{"role": "user", "content": prompt}]], max_new_tokens=max_new_tokens,
                       temperature=temperature, seed=seed)
        typer.echo(out[0]["text"])
        return
    typer.echo(f"chatting with {target} — empty line or Ctrl-D to quit, /reset to clear history", err=True)
    while True:
        try:
            line = input("you> ")
        except EOFError:
            break
        if not line.strip():
            break
        if line.strip() == "/reset":
            history = history[:1] if system else []
            continue
        history.append({"role": "user", "content": line})
        typer.echo("bot> ", nl=False)
        pieces = []
        for piece in stream(loaded, history, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed):
            pieces.append(piece)
            typer.echo(piece, nl=False)
        typer.echo()
        history.append({"role": "assistant", "content": "".join(pieces)})
