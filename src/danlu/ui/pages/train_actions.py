"""What the Train page's action row does, without Gradio: preview the exact command and YAML, save
and load a config, the planner's estimate with a fits / does-not-fit verdict, start, stop, resume."""

from __future__ import annotations

import json

import yaml

from danlu.errors import UserError
from danlu.ui import backends, form
from danlu.ui.i18n import t
from danlu.ui.jobs import cli_error, run_cli


def widget_value(spec: form.FieldSpec, value, multi: bool):
    """A form value as its widget takes it (a multi-select takes a list)."""
    if multi:
        return [v.strip() for v in str(value or "").split(",") if v.strip()]
    return value


def preview(ws, specs, vals: dict, method: str, stage: str, overwrite: bool) -> tuple[str, str]:
    """(the shell line Start runs, the YAML it writes) — or a commented error in place of both."""
    from danlu.ui.launch import config_yaml, planned_command

    try:
        data = form.values_to_config(specs, vals, method, stage)
        rel_config, args = planned_command(ws, data, overwrite=overwrite)
    except UserError as exc:
        return f"# {exc}", ""
    return f"cd {ws.root}\ndanlu {' '.join(args)}", f"# {rel_config}\n{config_yaml(data)}"


def start_run(ws, jobs, specs, vals, method, stage, overwrite, lang, resume: str = "") -> tuple[str, str]:
    """(message, run key or ''): Start on the form, or Resume on the run in output_dir."""
    from danlu.ui.launch import launch_training, resume_run

    try:
        if resume:
            launched = resume_run(ws, jobs, resume)
            return t("runs.resumed", lang, run=launched.run_dir), launched.run_dir
        data = form.values_to_config(specs, vals, method, stage)
        launched = launch_training(ws, jobs, data, overwrite=overwrite)
    except UserError as exc:
        return f"⚠️ {exc}", ""
    return t("train.started", lang, run=launched.run_dir, config=launched.config), launched.run_dir


def stop_how(ws, jobs, output_dir: str, lang: str) -> str:
    try:
        key = ws.relative(ws.resolve(output_dir))
    except UserError as exc:
        return f"⚠️ {exc}"
    how = jobs.stop(key)
    return t("train.stop_sent", lang, run=key, how=t(f"train.how.{how.replace(' ', '_')}", lang))


def save_config(ws, specs, name: str, vals, method, stage, lang) -> tuple[str, str]:
    from danlu.ui.launch import config_yaml
    from danlu.ui.workspace import safe_filename

    try:
        text = config_yaml(form.values_to_config(specs, vals, method, stage))
    except UserError as exc:
        return f"⚠️ {exc}", ""
    path = ws.dir("configs") / f"{safe_filename(name or 'my-run').removesuffix('.yaml')}.yaml"
    path.write_text(text, encoding="utf-8")
    return t("train.saved", lang, path=ws.relative(path)), ws.relative(path)


def load_config(ws, specs, rel: str, uploaded, lang):
    """(widget values, method, stage) of a saved config or an uploaded YAML (read, never executed)."""
    try:
        path = ws.resolve(rel, must_exist=True) if rel else None
        if path is None and uploaded:
            path = uploaded
        if path is None:
            raise UserError(t("train.load_none", lang))
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(str(exc)) from None
    return form.config_to_values(specs, data)


def plan_json(ws, specs, vals: dict, method: str, stage: str, gpu: str = "") -> dict:
    """`danlu plan CONFIG --json [--gpu GPU]` on the form's YAML; raises UserError."""
    data = form.values_to_config(specs, vals, method, stage)
    path = ws.dir(".danlu-ui") / "plan.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    args = ["plan", ws.relative(path), "--json", "--no-recommend", *(["--gpu", gpu] if gpu else [])]
    code, out, err = run_cli(ws.root, *args, timeout=120)
    if code != 0:
        raise UserError(f"danlu plan: {cli_error(err)}")
    try:
        return json.loads(out)
    except ValueError:
        raise UserError(f"danlu plan printed no JSON: {out[:200]}") from None


def estimate_text(ws, specs, vals, method, stage, gpu, lang) -> str:
    """The estimate as the page shows it: verdict, memory, time, cost; the full JSON folded below."""
    if not backends.available("plan"):
        return t("common.missing", lang, command=backends.command("plan"))
    try:
        out = plan_json(ws, specs, vals, method, stage, gpu or "")
    except UserError as exc:
        return f"⚠️ {exc}"
    dev, tm = out.get("device", {}), out.get("time", {})
    verdict = t("train.fits" if out.get("fits") else "train.does_not_fit", lang)
    costs = [c["usd"] for c in tm.get("costs") or [] if isinstance(c.get("usd"), (int, float))]
    cost = min(costs) if costs else None
    line = t("train.estimate_line", lang, verdict=verdict, peak=_gib(out.get("peak_bytes")),
             have=_gib(dev.get("memory_bytes")), device=dev.get("label") or dev.get("name", "?"),
             hours=_num(tm.get("hours")), cost=f"${cost:.2f}" if isinstance(cost, (int, float)) else "-")
    body = json.dumps(out, indent=2, ensure_ascii=False)
    return f"{line}\n\n<details><summary>danlu plan --json</summary>\n\n```json\n{body}\n```\n</details>"


def _gib(n) -> str:
    return f"{n / 2**30:.1f} GiB" if isinstance(n, (int, float)) else "?"


def _num(x) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "?"
