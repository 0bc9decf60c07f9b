"""Export & serve page: `danlu export` (merge / int8 / int4 / GGUF) and `danlu serve` (the
OpenAI-compatible API with its adapters) as subprocesses; the curl and openai-python snippets to
call the server. Both commands are optional parts of danlu: when one is not installed the page
says which command it is waiting for."""

from __future__ import annotations

import json

from danlu.errors import UserError
from danlu.ui import backends
from danlu.ui.i18n import t
from danlu.ui.jobs import cli_error, danlu_argv, run_cli, tail
from danlu.ui.workspace import safe_filename

SERVE_KEY = "serve"


def export_args(ws, run: str, name: str, merge: bool, quantize: str, gguf: bool) -> list[str]:
    run_dir = ws.resolve(run, must_exist=True)
    out = ws.resolve(f"exports/{safe_filename(name or run_dir.name)}")
    args = ["export", ws.relative(run_dir), "-o", ws.relative(out), "--json", "--overwrite"]
    if merge:
        args.append("--merge")
    if quantize and quantize != "none":
        args += ["--quantize", quantize]
    if gguf:
        args.append("--gguf")
    return args


def serve_args(ws, target: str, adapters: str, port: int) -> list[str]:
    """`danlu serve TARGET --adapter NAME=PATH ... --port N` (always on 127.0.0.1)."""
    args = ["serve", ws.relative(ws.resolve(target, must_exist=True)), "--host", "127.0.0.1", "--port", str(int(port))]
    for item in (adapters or "").split(","):
        if not item.strip():
            continue
        name, sep, path = item.strip().partition("=")
        if not sep:
            raise UserError(f"adapter {item.strip()!r} is not NAME=PATH", where="adapters")
        args += ["--adapter", f"{name.strip()}={ws.relative(ws.resolve(path.strip(), must_exist=True))}"]
    return args


def served_name(ws, target: str) -> str:
    """The model name the server started for `target` answers to (GET /v1/models lists it)."""
    from danlu.serve.adapters import served_model_name

    path = ws.resolve(target, must_exist=True)
    return served_model_name(ws.relative(path), path)


def snippets(port: int, model: str) -> str:
    url = f"http://127.0.0.1:{int(port)}/v1"
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "你好"}]}, ensure_ascii=False)
    return (f"```bash\ncurl {url}/chat/completions -H 'Content-Type: application/json' \\\n  -d '{body}'\n```\n\n"
            f"```python\nfrom openai import OpenAI\n\nclient = OpenAI(base_url=\"{url}\", api_key=\"none\")\n"
            f"reply = client.chat.completions.create(model=\"{model}\",\n"
            f"    messages=[{{\"role\": \"user\", \"content\": \"你好\"}}])\nprint(reply.choices[0].message.content)\n```")


def build(ctx) -> None:
    import gradio as gr

    L, ws, jobs = ctx.labels, ctx.ws, ctx.jobs
    can_export, can_serve = backends.available("export"), backends.available("serve")
    L.add(gr.Markdown(), value="export.intro")
    if not can_export:
        L.add(gr.Markdown(elem_classes="danlu-missing"), value=lambda lang: t("common.missing", lang, command="danlu export"))
    with gr.Row():
        run = L.add(gr.Dropdown(choices=ws.finished_runs(), allow_custom_value=True, elem_id="export-run"),
                    label="export.run")
        name = L.add(gr.Textbox(elem_id="export-name"), label="export.name")
        merge = L.add(gr.Checkbox(value=True), label="export.merge")
        quant = L.add(gr.Dropdown(choices=["none", "int8", "int4"], value="none"), label="export.quantize")
        gguf = L.add(gr.Checkbox(value=False), label="export.gguf")
    go = L.add(gr.Button(variant="primary", interactive=can_export, elem_id="export-start"), value="export.start")
    export_out = L.add(gr.JSON(elem_id="export-out"), label="export.report")
    status = gr.Markdown(elem_id="export-status")

    def on_export(r, n, m, q, g, lang):
        try:
            code, out, err = run_cli(ws.root, *export_args(ws, r, n, m, q, g))
        except UserError as exc:
            return None, f"⚠️ {exc}"
        if code != 0:
            return None, f"⚠️ danlu export: {cli_error(err)}"
        try:
            return json.loads(out), t("export.done", lang)
        except ValueError:
            return {"output": out}, t("export.done", lang)

    go.click(on_export, [run, name, merge, quant, gguf, ctx.lang], [export_out, status])

    L.add(gr.Markdown(), value="serve.title")
    if not can_serve:
        L.add(gr.Markdown(elem_classes="danlu-missing"), value=lambda lang: t("common.missing", lang, command="danlu serve"))
    with gr.Row():
        target = L.add(gr.Dropdown(choices=ws.finished_runs() + ws.exported_models(), allow_custom_value=True,
                                   elem_id="serve-target"), label="serve.target")
        adapters = L.add(gr.Textbox(elem_id="serve-adapters"), label="serve.adapters", info="serve.adapters_info")
        port = L.add(gr.Number(value=8000, precision=0, elem_id="serve-port"), label="serve.port")
    with gr.Row():
        start = L.add(gr.Button(variant="primary", interactive=can_serve, elem_id="serve-start"), value="serve.start")
        stop = L.add(gr.Button(variant="stop", interactive=can_serve, elem_id="serve-stop"), value="serve.stop")
    serve_status = gr.Markdown(elem_id="serve-status")
    code_md = gr.Markdown(snippets(8000, "MODEL-NAME"), elem_id="serve-snippets")  # the real name once started
    serve_log = L.add(gr.Textbox(lines=6, max_lines=6, autoscroll=True), label="runs.log")

    def on_start(tgt, ad, p, lang):
        try:
            argv = danlu_argv(*serve_args(ws, tgt, ad, p))
            jobs.start(SERVE_KEY, "serve", argv, cwd=ws.root, log_path=ws.dir(".danlu-ui") / "serve.log")
        except UserError as exc:
            return f"⚠️ {exc}", gr.update()
        return t("serve.started", lang, port=int(p)), snippets(p, served_name(ws, tgt))

    start.click(on_start, [target, adapters, port, ctx.lang], [serve_status, code_md])
    stop.click(lambda lang: t("train.stop_sent", lang, run="serve", how=jobs.stop(SERVE_KEY)), ctx.lang, serve_status)
    gr.Timer(3.0).tick(lambda: tail(ws.dir(".danlu-ui") / "serve.log"), None, serve_log, show_progress="hidden")
