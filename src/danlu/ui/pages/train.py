"""Train page, laid out like LlamaBoard's: the settings people change on one screen (model, chat
template, method, stage, dataset, learning rate, epochs, max length, batch size, gradient
accumulation, eval split, output folder), one action row (Preview command, Save, Load, Estimate,
Start, Stop, Resume), and beside it while training: progress with ETA, live loss and learning-rate
curves and the log tail. Every other field of the RunConfig schema sits in a collapsed accordion
of its section, generated from the schema (danlu.ui.form): a new config key appears without UI code.
Start writes the form as YAML and runs `danlu train` on it as a subprocess, as a person would."""

from __future__ import annotations

from danlu.errors import UserError
from danlu.ui import choices, form
from danlu.ui.i18n import field_info, field_label, t
from danlu.ui.pages.train_actions import (estimate_text, load_config, preview, save_config, start_run, stop_how,
                                          widget_value)

# The first screen: rows of field ids, as LlamaBoard lays them out ("method" / "stage" are the selectors)
FIRST_SCREEN = (
    ("model.name_or_path", "data.template", "method", "stage"),
    ("data.train", "data.eval_split", "output_dir", "overwrite"),
    ("train.learning_rate", "train.epochs", "train.max_length", "train.batch_size", "train.grad_accum"),
)
PRIMARY = {i for row in FIRST_SCREEN for i in row}
MULTI = {"data.train"}  # multi-select pickers (their config value is a list)
ESTIMATE_ON = ("model.name_or_path", "train.batch_size", "train.max_length", "train.grad_accum")
POLL_S = 1.5
SCALE = {"model.name_or_path": 3, "data.train": 3, "output_dir": 2}


def widget(gr, spec: form.FieldSpec, ws, primary: bool = False):
    common = dict(value=spec.default_widget(), elem_id="f-" + spec.id.replace(".", "-"),
                  scale=SCALE.get(spec.id, 1), min_width=120)
    if spec.id == "model.name_or_path":
        return gr.Dropdown(choices=choices.model_choices(ws), allow_custom_value=True, filterable=True,
                           **{**common, "value": None})
    if spec.id == "data.template":
        return gr.Dropdown(choices=list(choices.TEMPLATES), allow_custom_value=True, **common)
    if spec.id in MULTI:
        return gr.Dropdown(choices=choices.dataset_choices(ws), multiselect=True, allow_custom_value=True,
                           **{**common, "value": []})
    if spec.id == "data.eval":
        return gr.Dropdown(choices=choices.dataset_choices(ws), allow_custom_value=True, **common)
    if spec.kind in ("bool", "enable"):
        return gr.Checkbox(**common)
    if spec.kind == "choice":
        return gr.Dropdown(choices=[str(c) for c in spec.choices], **{**common, "value": common["value"] or None})
    if spec.kind in ("int", "float") and not spec.optional:  # a browser sends an empty Number as 0
        return gr.Number(precision=0 if spec.kind == "int" else None, **common)
    return gr.Textbox(lines=2 if spec.kind == "yaml" else 1, **common)


def _field(gr, L, spec, ws, primary: bool):
    comp = widget(gr, spec, ws, primary)
    comp.visible = form.shown(spec, "lora", "sft", {})
    return L.add(comp, label=lambda lang, s=spec: field_label(s, lang),
                 info=lambda lang, s=spec: field_info(s, lang, short=primary))


def build_primary(gr, ctx, specs, fields: dict):
    """The first screen's rows; returns (method, stage, extras) — extras: overwrite, upload."""
    L, ws = ctx.labels, ctx.ws
    by_id = {s.id: s for s in specs}
    selectors, extras = {}, {}
    for row in FIRST_SCREEN:
        with gr.Row(equal_height=True):
            for fid in row:
                if fid == "overwrite":
                    with gr.Column(min_width=140, scale=1):
                        extras["upload"] = L.add(gr.UploadButton(
                            file_types=[".jsonl", ".json", ".csv", ".parquet", ".txt"], size="sm",
                            elem_id="train-upload"), label="train.upload")
                        extras["overwrite"] = L.add(gr.Checkbox(value=False, elem_id="train-overwrite"),
                                                    label="train.overwrite")
                elif fid in ("method", "stage"):
                    opts = form.method_choices() if fid == "method" else form.stage_choices()
                    selectors[fid] = L.add(gr.Dropdown(choices=opts, value="lora" if fid == "method" else "sft",
                                                       elem_id=f"train-{fid}", min_width=120),
                                           label=f"train.{fid}", info=f"train.{fid}_info")
                else:
                    fields[fid] = _field(gr, L, by_id[fid], ws, True)
    return selectors["method"], selectors["stage"], extras


def build_sections(gr, ctx, specs, fields: dict) -> None:
    """One collapsed accordion per section for every field not on the first screen."""
    L = ctx.labels
    for section in form.SECTIONS:
        members = [s for s in specs if s.section == section and s.id not in PRIMARY]
        if not members:
            continue
        with L.add(gr.Accordion(open=False, elem_id=f"train-more-{section}"), label=f"section.{section}"):
            for spec in members:
                fields[spec.id] = _field(gr, L, spec, ctx.ws, False)


def build(ctx) -> None:
    import gradio as gr

    L, ws, jobs = ctx.labels, ctx.ws, ctx.jobs
    specs = form.form_specs()
    fields: dict[str, object] = {}
    method, stage, extras = build_primary(gr, ctx, specs, fields)
    with gr.Row(elem_id="train-actions"):
        buttons = {name: L.add(gr.Button(variant=var, elem_id=f"train-{name}", min_width=90, size="md"),
                               value=f"train.{name}")
                   for name, var in (("preview", "secondary"), ("save", "secondary"), ("load", "secondary"),
                                     ("estimate", "secondary"), ("start", "primary"), ("stop", "stop"),
                                     ("resume", "secondary"))}
    status = gr.Markdown(elem_id="train-status")
    bar = gr.HTML(elem_id="train-progress")
    with gr.Row():
        loss = L.add(gr.LinePlot(x="step", y="loss", color="series", elem_id="train-loss", visible=False,
                                 height=240), label="runs.loss", x_title="runs.axis_step", y_title="runs.loss",
                     color_title="runs.series")
        lr = L.add(gr.LinePlot(x="step", y="lr", elem_id="train-lr", visible=False, height=240), label="runs.lr", x_title="runs.axis_step", y_title="runs.lr")
    log_box = L.add(gr.Textbox(lines=6, max_lines=6, autoscroll=True, elem_id="train-log", visible=False),
                    label="runs.log")
    with gr.Row(equal_height=True):
        gpu = L.add(gr.Dropdown(choices=choices.gpu_choices(), value="", elem_id="train-gpu", scale=1),
                    label="train.gpu", choices=choices.gpu_choices("train.this_machine"))
        estimate_out = gr.Markdown(elem_id="train-estimate-out")
    with L.add(gr.Accordion(open=False, elem_id="train-preview-box"), label="train.preview_box") as preview_box:
        command = gr.Code(language="shell", elem_id="train-command", interactive=False)
        yaml_view = gr.Code(language="yaml", elem_id="train-yaml", interactive=False)
    with L.add(gr.Accordion(open=False, elem_id="train-saveload"), label="train.yaml") as saveload:
        with gr.Row():
            save_name = L.add(gr.Textbox(value="my-run", elem_id="train-save-name"), label="train.save_name")
            load_pick = L.add(gr.Dropdown(choices=ws.config_files(), allow_custom_value=True, elem_id="train-load-pick"),
                              label="train.load_pick")
            load_file = L.add(gr.File(file_types=[".yaml", ".yml"], type="filepath"), label="train.load_file")
    build_sections(gr, ctx, specs, fields)
    ctx.shared["last_run"] = last_run = gr.State("")
    wire(gr, ctx, specs, fields, method, stage, dict(
        buttons=buttons, gpu=gpu, status=status, bar=bar, loss=loss, lr=lr, log=log_box, estimate=estimate_out,
        preview_box=preview_box, command=command, yaml=yaml_view, saveload=saveload, save_name=save_name,
        load_pick=load_pick, load_file=load_file, last_run=last_run, **extras))


def wire(gr, ctx, specs, fields, method, stage, ui) -> None:
    """The page's events: visibility, pickers, the action row and the live panel."""
    from danlu.ui.live import plot_updates, snapshot

    ws, jobs = ctx.ws, ctx.jobs
    ids = list(fields)
    comps = [fields[i] for i in ids]
    form_in = [method, stage, *comps]
    b = ui["buttons"]
    overwrite = ui["overwrite"]

    by_id = {sp.id: sp for sp in specs}

    def values(args):
        return dict(zip(ids, args))

    def visibility(m, s, *args):
        vals = values(args)
        enabled = {sp.id: bool(vals.get(sp.id)) for sp in specs if sp.kind == "enable"}
        return [gr.update(visible=form.shown(sp, m, s, enabled)) for sp in specs]

    for trigger in (method, stage, *[fields[s.id] for s in specs if s.kind == "enable"]):
        trigger.change(visibility, form_in, [fields[s.id] for s in specs])

    fields["model.name_or_path"].focus(lambda: gr.update(choices=choices.model_choices(ws)), None,
                                       fields["model.name_or_path"])
    for fid in ("data.train", "data.eval"):
        fields[fid].focus(lambda d: gr.update(choices=choices.dataset_choices(ws, d)), fields["data.dataset_dir"],
                          fields[fid])

    def on_upload(path, picked, lang):
        try:
            rel = ws.save_upload(path)
        except UserError as exc:
            return gr.update(), f"⚠️ {exc}"
        return gr.update(choices=choices.dataset_choices(ws), value=[*(picked or []), rel]), t("data.saved", lang, path=rel)

    ui["upload"].upload(on_upload, [ui["upload"], fields["data.train"], ctx.lang], [fields["data.train"], ui["status"]])

    def on_preview(m, s, ow, *args):
        cmd, text = preview(ws, specs, values(args), m, s, ow)
        return cmd, text, gr.update(open=True)

    b["preview"].click(on_preview, [method, stage, overwrite, *comps], [ui["command"], ui["yaml"], ui["preview_box"]])

    def on_start(m, s, ow, lang, *args):
        msg, run = start_run(ws, jobs, specs, values(args), m, s, ow, lang)
        return msg, run if run else gr.update()

    b["start"].click(on_start, [method, stage, overwrite, ctx.lang, *comps], [ui["status"], ui["last_run"]])
    b["stop"].click(lambda out, lang: stop_how(ws, jobs, out, lang), [fields["output_dir"], ctx.lang], ui["status"])
    b["resume"].click(lambda out, lang: start_run(ws, jobs, specs, None, "", "", False, lang, resume=out),
                      [fields["output_dir"], ctx.lang], [ui["status"], ui["last_run"]])

    def on_save(name, m, s, lang, *args):
        msg, rel = save_config(ws, specs, name, values(args), m, s, lang)
        return msg, gr.update(choices=ws.config_files(), value=rel) if rel else gr.update()

    b["save"].click(on_save, [ui["save_name"], method, stage, ctx.lang, *comps], [ui["status"], ui["load_pick"]])

    def on_load(rel, uploaded, lang):
        try:
            vals, m, s = load_config(ws, specs, rel, uploaded, lang)
        except UserError as exc:
            return [f"⚠️ {exc}", gr.update(), gr.update(), gr.update(open=True), *[gr.update() for _ in comps]]
        enabled = {sp.id: bool(vals.get(sp.id)) for sp in specs if sp.kind == "enable"}
        ups = [gr.update(value=widget_value(sp, vals[sp.id], sp.id in MULTI),
                         visible=form.shown(sp, m, s, enabled)) for sp in (by_id[i] for i in ids)]
        return [t("train.loaded", lang), m, s, gr.update(), *ups]

    b["load"].click(on_load, [ui["load_pick"], ui["load_file"], ctx.lang], [ui["status"], method, stage, ui["saveload"], *comps])

    def on_estimate(m, s, g, lang, *args):
        return estimate_text(ws, specs, values(args), m, s, g, lang)

    b["estimate"].click(on_estimate, [method, stage, ui["gpu"], ctx.lang, *comps], ui["estimate"])

    def live(out, lang):
        snap = snapshot(ws, jobs, out, lang) if _exists(ws, out) else None
        if snap is None or not snap["progress"]:
            return "", gr.update(visible=False), gr.update(visible=False), gr.update(visible=False)
        return (f'{snap["progress"]}<div class="danlu-status">{_md(snap["line"])}</div>',
                *plot_updates(gr, snap), gr.update(value=snap["log"], visible=True))

    gr.Timer(POLL_S).tick(live, [fields["output_dir"], ctx.lang], [ui["bar"], ui["loss"], ui["lr"], ui["log"]],
                          show_progress="hidden")


def _exists(ws, rel: str) -> bool:
    try:
        return bool(rel) and ws.resolve(rel).is_dir()
    except UserError:
        return False


def _md(line: str) -> str:
    import html
    import re

    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(line))
