"""Evaluate page: `danlu eval RUN --data FILE [--compare base] -o evals/NAME` as a subprocess, its
log while it runs, then its metrics.json and report.html."""

from __future__ import annotations

import json

from danlu.errors import UserError
from danlu.ui.i18n import t
from danlu.ui.jobs import danlu_argv, tail
from danlu.ui.workspace import safe_filename


def start_eval(ws, jobs, run: str, data: str, compare: bool, limit) -> str:
    """Starts the eval job; returns its output folder (workspace-relative)."""
    run_dir = ws.resolve(run, must_exist=True)
    data_path = ws.resolve(data, must_exist=True)
    out = ws.dir("evals") / safe_filename(run_dir.name)
    args = ["eval", ws.relative(run_dir), "--data", ws.relative(data_path), "-o", ws.relative(out)]
    if compare:
        args += ["--compare", "base"]
    if limit:
        args += ["--limit", str(int(limit))]
    jobs.start(f"eval:{ws.relative(out)}", "eval", danlu_argv(*args), cwd=ws.root, log_path=out.with_suffix(".log"))
    return ws.relative(out)


def report(ws, jobs, out: str, lang: str):
    """(status line, metrics, log, report.html path or None) of an eval folder."""
    import gradio as gr

    if not out:  # nothing started yet: leave the page as it is
        return gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
    folder = ws.resolve(out)
    job = jobs.get(f"eval:{out}")
    log = tail(folder.with_suffix(".log"))
    metrics_file, html = folder / "metrics.json", folder / "report.html"
    if job is not None and job.running:
        return t("eval.running", lang, out=out), None, log, None, ""
    if job is not None and job.proc.returncode != 0:
        return t("eval.failed", lang, code=job.proc.returncode), None, log, None, ""
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = None
    return (t("eval.done", lang, out=out), metrics, log, str(html) if html.is_file() else None,
            inline_report(html))


def inline_report(html_file) -> str:
    """report.html shown in the page: a sandboxed iframe (no scripts) holding the file's text."""
    import html as html_mod

    try:
        text = html_file.read_text(encoding="utf-8")
    except OSError:
        return ""
    return (f'<iframe sandbox="" srcdoc="{html_mod.escape(text, quote=True)}" '
            'style="width:100%;height:720px;border:1px solid #ddd;border-radius:6px"></iframe>')


def build(ctx) -> None:
    import gradio as gr

    L, ws, jobs = ctx.labels, ctx.ws, ctx.jobs
    with gr.Row():
        run = L.add(gr.Dropdown(choices=ws.finished_runs(), allow_custom_value=True, elem_id="eval-run"),
                    label="eval.run")
        data = L.add(gr.Dropdown(choices=ws.data_files(), allow_custom_value=True, elem_id="eval-data"),
                     label="eval.data")
        compare = L.add(gr.Checkbox(value=True, elem_id="eval-compare"), label="eval.compare")
        limit = L.add(gr.Number(value=20, precision=0, elem_id="eval-limit"), label="eval.limit")
    with gr.Row():
        refresh = L.add(gr.Button(size="sm"), value="common.refresh")
        start = L.add(gr.Button(variant="primary", elem_id="eval-start"), value="eval.start")
    out = gr.State("")
    status = gr.Markdown(elem_id="eval-status")
    metrics = L.add(gr.JSON(elem_id="eval-metrics"), label="eval.metrics")
    html = L.add(gr.File(elem_id="eval-report"), label="eval.report")
    inline = gr.HTML(elem_id="eval-report-inline")
    log_box = L.add(gr.Textbox(lines=8, max_lines=8, autoscroll=True), label="runs.log")

    def on_start(r, d, c, n, lang):
        try:
            folder = start_eval(ws, jobs, r, d, c, n)
        except UserError as exc:
            return "", f"⚠️ {exc}"
        return folder, t("eval.running", lang, out=folder)

    start.click(on_start, [run, data, compare, limit, ctx.lang], [out, status])
    refresh.click(lambda: (gr.update(choices=ws.finished_runs()), gr.update(choices=ws.data_files())), None, [run, data])
    gr.Timer(2.0).tick(lambda o, lang: report(ws, jobs, o, lang), [out, ctx.lang], [status, metrics, log_box, html, inline],
                       show_progress="hidden")
