"""Chat page: pick a run or an exported model, and its base (or any model); the same prompt goes
to both and their answers stream side by side. Inference uses danlu.infer (the code `danlu chat`
uses) in the UI process; models stay loaded until another is picked."""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path

from danlu.errors import DanluError, UserError
from danlu.ui.i18n import t

_CACHE: dict[str, object] = {}


def load(ws, target: str):
    """A loaded model for a workspace path or a builtin:* / hub id (cached, a few at most)."""
    from danlu.infer.load import load_for_inference

    key = target if target.startswith("builtin:") or _hub_like(ws, target) else str(ws.resolve(target, must_exist=True))
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        is_ckpt = Path(key).parent.name == "checkpoints" and (Path(key) / "adapter_config.json").is_file()
        _CACHE[key] = load_checkpoint(Path(key)) if is_ckpt else load_for_inference(key)
    return _CACHE[key]


def load_checkpoint(ckpt: Path):
    """An adapter checkpoint (RUN/checkpoints/step-N) on the base its run's config.yaml names."""
    import torch
    import yaml

    from danlu.chat.templates import resolve_template
    from danlu.config.load import load_config_dict
    from danlu.infer.load import Loaded, refuse_pickles
    from danlu.models.load import load_model, load_tokenizer

    config = ckpt.parent.parent / "config.yaml"
    if not config.is_file():
        raise UserError(f"{ckpt} is not inside a run directory with a config.yaml")
    cfg = load_config_dict(yaml.safe_load(config.read_text(encoding="utf-8")) or {}, source=str(config))
    refuse_pickles(ckpt)
    tok = load_tokenizer(str(ckpt))
    tpl = resolve_template(tok, cfg.data.template)
    base = load_model(cfg.model.name_or_path, task="causal_lm", dtype=torch.float32, **cfg.method.load_kwargs())
    model = cfg.method.load_trained(base, ckpt).eval()
    return Loaded(model, tok, tpl.stop_token_ids(), {"base_model": cfg.model.name_or_path}, str(ckpt),
                  cfg.model.name_or_path)


def _hub_like(ws, target: str) -> bool:
    from danlu.ui.confine import is_local_path

    return not is_local_path(ws, target)


def base_of(ws, run: str) -> str:
    """The base model named in a run's artefact (danlu.json), or ''."""
    from danlu.infer.load import find_artefact

    try:
        path = ws.resolve(run, must_exist=True)
        if path.parent.name == "checkpoints":  # a checkpoint: the base its run's config.yaml names
            import yaml

            cfg = yaml.safe_load((path.parent.parent / "config.yaml").read_text(encoding="utf-8")) or {}
            return str((cfg.get("model") or {}).get("name_or_path", ""))
        art = find_artefact(str(path))
    except (UserError, OSError, ValueError):
        return ""
    return ws.read_json(art / "danlu.json").get("base_model", "") if art else ""


def answer_pair(ws, tuned: str, base: str, prompt: str, max_new_tokens: int, history: tuple[list, list]):
    """Yields (base chat, tuned chat) while both answers stream, interleaved piece by piece."""
    from danlu.infer.generate import stream

    base_hist = plain(history[0]) + [{"role": "user", "content": prompt}, {"role": "assistant", "content": ""}]
    tuned_hist = plain(history[1]) + [{"role": "user", "content": prompt}, {"role": "assistant", "content": ""}]
    streams = []
    for target, hist in ((base, base_hist), (tuned, tuned_hist)):
        if target:
            conv = [m for m in hist[:-1]]
            streams.append((hist, stream(load(ws, target), conv, max_new_tokens=int(max_new_tokens))))
        else:
            hist[-1]["content"] = "—"
    for pieces in zip_longest(*[s for _, s in streams], fillvalue=""):
        for (hist, _), piece in zip(streams, pieces):
            hist[-1]["content"] += piece
        yield base_hist, tuned_hist
    yield base_hist, tuned_hist


def plain(messages) -> list[dict]:
    """Chatbot messages as {role, content: str} (Gradio may hand content back as a list of parts)."""
    out = []
    for m in messages or []:
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
        out.append({"role": m.get("role"), "content": str(content or "")})
    return out


def build(ctx) -> None:
    import gradio as gr

    L, ws = ctx.labels, ctx.ws
    with gr.Row():
        tuned = L.add(gr.Dropdown(choices=_targets(ws), allow_custom_value=True, elem_id="chat-tuned"),
                      label="chat.tuned")
        base = L.add(gr.Dropdown(choices=["builtin:tiny"], allow_custom_value=True, elem_id="chat-base"),
                     label="chat.base")
        max_new = L.add(gr.Slider(8, 1024, value=128, step=8, elem_id="chat-max-new"), label="chat.max_new_tokens")
        refresh = L.add(gr.Button(size="sm"), value="common.refresh")
    with gr.Row():
        base_chat = L.add(gr.Chatbot(elem_id="chat-base-out", height=360), label="chat.base_answer")
        tuned_chat = L.add(gr.Chatbot(elem_id="chat-tuned-out", height=360), label="chat.tuned_answer")
    prompt = L.add(gr.Textbox(elem_id="chat-prompt"), label="chat.prompt", placeholder="chat.placeholder")
    with gr.Row():
        send = L.add(gr.Button(variant="primary", elem_id="chat-send"), value="chat.send")
        clear = L.add(gr.Button(elem_id="chat-clear"), value="chat.clear")
    status = gr.Markdown(elem_id="chat-status")

    def on_pick(run):
        b = base_of(ws, run) if run else ""
        return gr.update(value=b, choices=sorted({b, "builtin:tiny"} - {""}))

    tuned.change(on_pick, tuned, base)
    tuned.focus(lambda: gr.update(choices=_targets(ws)), None, tuned)
    refresh.click(lambda: gr.update(choices=_targets(ws)), None, tuned)

    def on_send(t_target, b_target, n, text, bh, th, lang):
        if not text or not text.strip():
            yield bh, th, t("chat.empty", lang)
            return
        try:
            for b_out, t_out in answer_pair(ws, t_target, b_target, text, n, (bh or [], th or [])):
                yield b_out, t_out, ""
        except (DanluError, OSError, ValueError) as exc:
            yield bh, th, f"⚠️ {exc}"

    send.click(on_send, [tuned, base, max_new, prompt, base_chat, tuned_chat, ctx.lang], [base_chat, tuned_chat, status])
    prompt.submit(on_send, [tuned, base, max_new, prompt, base_chat, tuned_chat, ctx.lang], [base_chat, tuned_chat, status])
    clear.click(lambda: ([], [], ""), None, [base_chat, tuned_chat, status])


def _targets(ws) -> list[str]:
    from danlu.ui.choices import chat_targets

    return chat_targets(ws)
