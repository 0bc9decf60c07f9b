"""Runs page: the runs of the workspace; status, progress, loss and learning-rate curves read live
from the run directory's metrics.jsonl; its log; stop, and resume a stopped run."""

from __future__ import annotations

from danlu.errors import UserError
from danlu.ui.i18n import t
from danlu.ui.launch import progress, read_metrics, resume_run, run_log, run_status

POLL_S = 2.0


def curves(rows: list[dict]):
    """(loss frame, learning-rate frame) for the line plots; eval_loss rows as a second series."""
    import pandas as pd

    loss = [{"step": r["step"], "loss": r["loss"], "series": "train"} for r in rows
            if r.get("loss") is not None and "step" in r]
    loss += [{"step": r["step"], "loss": r["eval_loss"], "series": "eval"} for r in rows
             if r.get("eval_loss") is not None and "step" in r]
    lr = [{"step": r["step"], "lr": r["lr"]} for r in rows if r.get("lr") is not None and "step" in r]
    return (pd.DataFrame(loss, columns=["step", "loss", "series"]), pd.DataFrame(lr, columns=["step", "lr"]))


def snapshot(ws, jobs, run: str, lang: str):
    """Everything the page shows about one run: status line, loss, lr, log."""
    if not run:
        return t("runs.none", lang), None, None, ""
    try:
        run_dir = ws.resolve(run, must_exist=True)
    except UserError as exc:
        return f"⚠️ {exc}", None, None, ""
    rows = read_metrics(run_dir)
    step, total = progress(run_dir, rows)
    status = run_status(ws, jobs, run)
    last = next((r for r in reversed(rows) if r.get("loss") is not None), {})
    line = t("runs.status_line", lang, run=run, status=t(f"runs.status.{status}", lang), step=step,
             total=total or "?", loss=f"{last['loss']:.4f}" if "loss" in last else "-")
    loss, lr = curves(rows)
    return line, loss, lr, run_log(run_dir)


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
    with gr.Row():
        loss = L.add(gr.LinePlot(x="step", y="loss", color="series", elem_id="runs-loss"), label="runs.loss")
        lr = L.add(gr.LinePlot(x="step", y="lr", elem_id="runs-lr"), label="runs.lr")
    log_box = L.add(gr.Textbox(lines=12, max_lines=12, autoscroll=True, elem_id="runs-log"), label="runs.log")
    timer = gr.Timer(POLL_S)
    outputs = [line, loss, lr, log_box]

    def show(run, lang):
        return snapshot(ws, jobs, run, lang)

    pick.change(show, [pick, ctx.lang], outputs)
    timer.tick(show, [pick, ctx.lang], outputs, show_progress="hidden")
    refresh.click(lambda: gr.update(choices=ws.runs()), None, pick)
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
