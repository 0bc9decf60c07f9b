"""Runs page: the runs of the workspace; status, progress with ETA, loss and learning-rate curves
read live from the run directory's metrics.jsonl (danlu.ui.live); its log; stop, and resume a
stopped run."""

from __future__ import annotations

from danlu.errors import UserError
from danlu.ui.i18n import t
from danlu.ui.launch import resume_run
from danlu.ui.live import curves, plot_updates, snapshot

__all__ = ["curves", "build"]
POLL_S = 2.0


def build(ctx) -> None:
    import gradio as gr

    L, ws, jobs = ctx.labels, ctx.ws, ctx.jobs
    with gr.Row():
        pick = L.add(gr.Dropdown(choices=ws.runs(), allow_custom_value=True, elem_id="runs-pick", scale=3),
                     label="runs.pick")
        refresh = L.add(gr.Button(size="sm", elem_id="runs-refresh"), value="common.refresh")
        stop = L.add(gr.Button(variant="stop", elem_id="runs-stop"), value="train.stop")
        resume = L.add(gr.Button(elem_id="runs-resume"), value="runs.resume")
    line = gr.Markdown(elem_id="runs-status")
    bar = gr.HTML(elem_id="runs-progress")
    with gr.Row():
        loss = L.add(gr.LinePlot(x="step", y="loss", color="series", elem_id="runs-loss", visible=False),
                     label="runs.loss", x_title="runs.axis_step", y_title="runs.loss",
                     color_title="runs.series")
        lr = L.add(gr.LinePlot(x="step", y="lr", elem_id="runs-lr", visible=False), label="runs.lr", x_title="runs.axis_step", y_title="runs.lr")
    log_box = L.add(gr.Textbox(lines=12, max_lines=12, autoscroll=True, elem_id="runs-log"), label="runs.log")
    timer = gr.Timer(POLL_S)
    outputs = [line, bar, loss, lr, log_box]

    def show(run, lang):
        snap = snapshot(ws, jobs, run, lang)
        return (snap["line"], snap["progress"], *plot_updates(gr, snap), snap["log"])

    pick.change(show, [pick, ctx.lang], outputs)
    timer.tick(show, [pick, ctx.lang], outputs, show_progress="hidden")
    refresh.click(lambda: gr.update(choices=ws.runs()), None, pick)
    pick.focus(lambda: gr.update(choices=ws.runs()), None, pick)
    ctx.shared["last_run"].change(lambda r: gr.update(choices=ws.runs(), value=r), ctx.shared["last_run"], pick)

    def on_stop(run, lang):
        return t("train.stop_sent", lang, run=run, how=jobs.stop(run)) if run else t("runs.none", lang)

    def on_resume(run, lang):
        try:
            launched = resume_run(ws, jobs, run)
        except UserError as exc:
            return f"⚠️ {exc}"
        return t("runs.resumed", lang, run=launched.run_dir)

    stop.click(on_stop, [pick, ctx.lang], line)
    resume.click(on_resume, [pick, ctx.lang], line)
