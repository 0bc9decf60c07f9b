"""Train page: a form generated from the RunConfig schema (danlu.ui.form), grouped by section,
showing only the fields of the chosen method and stage; save / load YAML; the planner's estimate
(`danlu plan`, when installed); start and stop `danlu train` as a subprocess."""

from __future__ import annotations

from danlu.errors import UserError
from danlu.ui import backends, form
from danlu.ui.i18n import describe, t
from danlu.ui.jobs import cli_error, run_cli

PICKED_FILES = {"data.train", "data.eval"}  # text fields offered as a pick list of workspace data files
ESTIMATE_ON = ("model.name_or_path", "train.batch_size", "train.max_length", "train.grad_accum")


def widget(gr, spec: form.FieldSpec, ws):
    common = dict(value=spec.default_widget(), elem_id="f-" + spec.id.replace(".", "-"))
    if spec.kind in ("bool", "enable"):
        return gr.Checkbox(**common)
    if spec.kind == "choice":
        return gr.Dropdown(choices=[str(c) for c in spec.choices], **{**common, "value": common["value"] or None})
    if spec.kind in ("int", "float") and not spec.optional:  # a browser sends an empty Number as 0
        return gr.Number(precision=0 if spec.kind == "int" else None, **common)
    if spec.id in PICKED_FILES:
        return gr.Dropdown(choices=ws.data_files(), allow_custom_value=True, **common)
    return gr.Textbox(lines=2 if spec.kind == "yaml" else 1, **common)


def build(ctx) -> None:
    import gradio as gr

    L, ws, jobs = ctx.labels, ctx.ws, ctx.jobs
    specs = form.form_specs()
    L.add(gr.Markdown(), value="train.intro")
    with gr.Row():
        method = L.add(gr.Dropdown(choices=form.method_choices(), value="lora", elem_id="train-method"),
                       label="train.method")
        stage = L.add(gr.Dropdown(choices=form.stage_choices(), value="sft", elem_id="train-stage"),
                      label="train.stage")
    fields: dict[str, object] = {}
    for section in form.SECTIONS:
        members = [s for s in specs if s.section == section]
        if not members:
            continue
        with L.add(gr.Accordion(open=section in ("model", "data", "train", "output")), label=f"section.{section}"):
            for spec in members:
                comp = widget(gr, spec, ws)
                comp.visible = form.shown(spec, "lora", "sft", {})
                fields[spec.id] = L.add(comp, label=lambda lang, s=spec: s.id if s.section in ("method", "stage")
                                        else ".".join(s.path), info=lambda lang, s=spec: describe(s, lang))
    ids = list(fields)
    comps = [fields[i] for i in ids]
    with gr.Row():
        overwrite = L.add(gr.Checkbox(value=False, elem_id="train-overwrite"), label="train.overwrite")
        start = L.add(gr.Button(variant="primary", elem_id="train-start"), value="train.start")
        stop = L.add(gr.Button(variant="stop", elem_id="train-stop"), value="train.stop")
        estimate = L.add(gr.Button(elem_id="train-estimate"), value="train.estimate")
    status = gr.Markdown(elem_id="train-status")
    estimate_out = L.add(gr.Markdown(elem_id="train-estimate-out"), value="train.estimate_hint")
    with L.add(gr.Accordion(open=False), label="train.yaml"):
        yaml_view = gr.Code(language="yaml", elem_id="train-yaml")
        with gr.Row():
            save_name = L.add(gr.Textbox(value="my-run", elem_id="train-save-name"), label="train.save_name")
            save = L.add(gr.Button(elem_id="train-save"), value="train.save")
            load_pick = L.add(gr.Dropdown(choices=ws.config_files(), allow_custom_value=True, elem_id="train-load-pick"),
                              label="train.load_pick")
            load = L.add(gr.Button(elem_id="train-load"), value="train.load")
        load_file = L.add(gr.File(file_types=[".yaml", ".yml"], type="filepath"), label="train.load_file")
    last_run = ctx.shared["last_run"] = gr.State("")

    def values(args):
        return dict(zip(ids, args))

    def visibility(m, s, *args):
        vals = values(args)
        enabled = {sp.id: bool(vals.get(sp.id)) for sp in specs if sp.kind == "enable"}
        return [gr.update(visible=form.shown(sp, m, s, enabled)) for sp in specs]

    toggles = [fields[s.id] for s in specs if s.kind == "enable"]
    for trigger in (method, stage, *toggles):
        trigger.change(visibility, [method, stage, *comps], comps)

    def to_yaml(m, s, *args):
        import yaml

        try:
            return yaml.safe_dump(form.values_to_config(specs, values(args), m, s), allow_unicode=True, sort_keys=False)
        except UserError as exc:
            return f"# {exc}"

    yaml_view_in = [method, stage, *comps]
    for trigger in (method, stage):
        trigger.change(to_yaml, yaml_view_in, yaml_view)

    def on_start(m, s, ow, lang, *args):
        from danlu.ui.launch import launch_training

        try:
            data = form.values_to_config(specs, values(args), m, s)
            launched = launch_training(ws, jobs, data, overwrite=ow)
        except UserError as exc:
            return f"⚠️ {exc}", gr.update()
        return t("train.started", lang, run=launched.run_dir, config=launched.config), launched.run_dir

    start.click(on_start, [method, stage, overwrite, ctx.lang, *comps], [status, last_run])

    def on_stop(run, lang):
        if not run:
            return t("train.nothing_running", lang)
        return t("train.stop_sent", lang, run=run, how=jobs.stop(run))

    stop.click(on_stop, [last_run, ctx.lang], status)

    def on_save(name, m, s, lang, *args):
        from danlu.ui.workspace import safe_filename

        text = to_yaml(m, s, *args)
        if text.startswith("# "):
            return text[2:], gr.update()
        path = ws.dir("configs") / f"{safe_filename(name or 'my-run').removesuffix('.yaml')}.yaml"
        path.write_text(text, encoding="utf-8")
        return t("train.saved", lang, path=ws.relative(path)), gr.update(choices=ws.config_files(), value=ws.relative(path))

    save.click(on_save, [save_name, method, stage, ctx.lang, *comps], [status, load_pick])

    def on_load(rel, uploaded, lang):
        import yaml

        try:
            path = ws.resolve(rel, must_exist=True) if rel else None
            if path is None and uploaded:
                path = uploaded  # a YAML the browser sent: read as text, never executed
            if path is None:
                raise UserError(t("train.load_none", lang))
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
            vals, m, s = form.config_to_values(specs, data)
        except (UserError, OSError, yaml.YAMLError) as exc:
            return [f"⚠️ {exc}", gr.update(), gr.update(), *[gr.update() for _ in comps]]
        enabled = {sp.id: bool(vals.get(sp.id)) for sp in specs if sp.kind == "enable"}
        ups = [gr.update(value=vals[sp.id], visible=form.shown(sp, m, s, enabled)) for sp in specs]
        return [t("train.loaded", lang), m, s, *ups]

    load.click(on_load, [load_pick, load_file, ctx.lang], [status, method, stage, *comps])

    def on_estimate(m, s, lang, *args):
        return plan_estimate(ws, specs, values(args), m, s, lang)

    estimate.click(on_estimate, [method, stage, ctx.lang, *comps], estimate_out)
    for trigger in [method, stage, *[fields[i] for i in ESTIMATE_ON]]:
        trigger.change(on_estimate, [method, stage, ctx.lang, *comps], estimate_out)


def plan_estimate(ws, specs, vals: dict, method: str, stage: str, lang: str) -> str:
    """Memory / time / cost from `danlu plan CONFIG --json` on the form's YAML (when installed)."""
    import json

    import yaml

    if not backends.available("plan"):
        return t("common.missing", lang, command=backends.command("plan"))
    try:
        data = form.values_to_config(specs, vals, method, stage)
    except UserError as exc:
        return f"⚠️ {exc}"
    path = ws.dir(".danlu-ui") / "plan.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, out, err = run_cli(ws.root, "plan", ws.relative(path), "--json", timeout=120)
    if code != 0:
        return f"⚠️ danlu plan: {cli_error(err)}"
    try:
        return "```json\n" + json.dumps(json.loads(out), indent=2, ensure_ascii=False) + "\n```"
    except ValueError:
        return "```\n" + out + "\n```"
