"""Data page: upload or pick a file; detected format, rows, token-length histogram, problems with
line numbers, rendered samples with the trained spans highlighted; clean / dedup / scrub / split
through `danlu data ...` subprocesses, whose summaries are shown as they print them (--json)."""

from __future__ import annotations

import json

from danlu.errors import UserError
from danlu.ui.i18n import LANGS, t
from danlu.ui.jobs import cli_error, run_cli
from danlu.ui.workspace import DATA_SUFFIXES

ACTIONS = ("clean", "dedup", "scrub", "split")


def build(ctx) -> None:
    import gradio as gr

    L, ws = ctx.labels, ctx.ws
    L.add(gr.Markdown(), value="data.intro")
    with gr.Row():
        upload = L.add(gr.File(file_types=list(DATA_SUFFIXES), type="filepath", elem_id="data-upload"),
                       label="data.upload")
        with gr.Column():
            pick = L.add(gr.Dropdown(choices=ws.data_files(), allow_custom_value=True, elem_id="data-pick"),
                         label="data.pick", info="data.pick_info")
            model = L.add(gr.Textbox(value="builtin:tiny", elem_id="data-model"), label="data.model")
            with gr.Row():
                refresh = L.add(gr.Button(size="sm"), value="common.refresh")
                preview = L.add(gr.Button(variant="primary", elem_id="data-preview"), value="data.preview")
    status = gr.Markdown(elem_id="data-status")
    with gr.Row():
        summary = L.add(gr.JSON(elem_id="data-summary"), label="data.summary")
        hist = L.add(gr.BarPlot(x="tokens", y="samples", sort=None, elem_id="data-hist", visible=False),
                     label="data.histogram", x_title="data.axis_tokens", y_title="data.axis_samples")
    problems = L.add(gr.Dataframe(elem_id="data-problems", interactive=False, visible=False), label="data.problems")
    samples = L.add(gr.HighlightedText(color_map={t("data.trained", lang): "green" for lang in LANGS}, combine_adjacent=True,
                                       show_legend=False, elem_id="data-samples"), label="data.samples")
    with gr.Row():
        buttons = {a: L.add(gr.Button(elem_id=f"data-{a}"), value=f"data.{a}") for a in ACTIONS}
    action_out = L.add(gr.JSON(elem_id="data-action-out"), label="data.action_out")
    ctx.shared["data_pick"] = pick

    def on_upload(path, lang):
        if not path:
            return gr.update(), ""
        try:
            rel = ws.save_upload(path)
        except UserError as exc:
            return gr.update(), f"⚠️ {exc}"
        return gr.update(choices=ws.data_files(), value=rel), t("data.saved", lang, path=rel)

    upload.upload(on_upload, [upload, ctx.lang], [pick, status])
    refresh.click(lambda: gr.update(choices=ws.data_files()), None, pick)
    shown = [status, summary, hist, problems, samples]

    def on_pick(f, m, lang):  # the summary at once: picking (or uploading) a file previews it
        out = inspect_file(ws, f, m, lang) if f else ("", None, None, None, None)
        return (*out[:2], gr.update(value=out[2], visible=out[2] is not None), gr.update(value=out[3], visible=out[3] is not None and len(out[3]) > 0), out[4])

    preview.click(on_pick, [pick, model, ctx.lang], shown)
    pick.change(on_pick, [pick, model, ctx.lang], shown)
    pick.focus(lambda: gr.update(choices=ws.data_files()), None, pick)
    for action, button in buttons.items():
        button.click(lambda f, lang, a=action: run_action(ws, a, f, lang), [pick, ctx.lang],
                     [status, action_out, pick])


def inspect_file(ws, rel: str, model: str, lang: str):
    """The page's preview of one workspace file, through danlu.workbench.inspect_rows and danlu.workbench.render."""
    import pandas as pd

    from danlu.workbench.inspect_rows import inspect_data
    from danlu.workbench.render import render_samples, spans

    empty = (None, None, None, None)
    try:
        path = ws.resolve(rel, must_exist=True)
        report = inspect_data(str(path), model=model or "builtin:tiny", examples=0)
        rendered, tok = render_samples(str(path), model or "builtin:tiny", limit=3)
    except UserError as exc:
        return (f"⚠️ {exc}", *empty)
    hist = pd.DataFrame([{"tokens": f"{a}-{b}", "samples": n} for a, b, n in report.histogram])
    probs = [[k, v.get("count"), v.get("first"), v.get("reason")] for k, v in report.problems.items()]
    highlighted = []
    for s in rendered:
        where = s.where.replace(str(ws.root) + "/", "")
        highlighted.append((f"\n── {where} ──\n", None))
        for trained, ids in spans(s.encoded):
            highlighted.append((tok.decode(ids, skip_special_tokens=False), t("data.trained", lang) if trained else None))
    keep = ("format", "rows", "good_rows", "fields", "roles", "tokens", "chars")
    summary = {k: report.to_dict()[k] for k in keep}
    line = t("data.detected", lang, fmt=report.format, rows=report.rows, good=report.good_rows,
             problems=sum(v.get("count", 0) for v in report.problems.values()))
    columns = [t(f"data.col.{c}", lang) for c in ("category", "count", "first", "reason")]
    return line, summary, hist, pd.DataFrame(probs, columns=columns), highlighted


def run_action(ws, action: str, rel: str, lang: str):
    """`danlu data ACTION FILE --json` in the workspace; its output lands next to the input."""
    import gradio as gr

    try:
        path = ws.resolve(rel, must_exist=True)
    except UserError as exc:
        return f"⚠️ {exc}", None, gr.update()
    code, out, err = run_cli(ws.root, "data", action, ws.relative(path), "--json", "--on-bad-row", "skip")
    if code != 0:
        return f"⚠️ danlu data {action}: {cli_error(err)}", None, gr.update()
    try:
        result = json.loads(out)
    except ValueError:
        result = {"output": out}
    return t("data.action_done", lang, action=action), result, gr.update(choices=ws.data_files())
