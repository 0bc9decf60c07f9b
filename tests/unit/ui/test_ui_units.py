"""The UI's pure parts: form ↔ RunConfig, workspace confinement, translations, bind rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from danlu.config.load import load_config_dict
from danlu.errors import UserError
from danlu.ui import form
from danlu.ui.i18n import lang_from_header, strings, t
from danlu.ui.launch import confine_config
from danlu.ui.workspace import Workspace, safe_filename

UI = Path(__file__).resolve().parents[3] / "src" / "danlu" / "ui"


@pytest.fixture(scope="module")
def specs():
    return form.form_specs()


def test_form_covers_every_schema_field(specs):
    assert {s.id for s in specs} == form.schema_leaf_ids()


def test_every_field_has_a_description(specs):
    missing = [s.id for s in specs if not s.description.strip()]
    assert missing == []


CONFIGS = [
    {"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "data/qa.jsonl"}, "method": {"name": "lora", "r": 4},
     "train": {"max_steps": 3, "learning_rate": 0.005, "report_to": []}, "output_dir": "runs/a"},
    {"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "data/qa.jsonl", "packing": False},
     "method": {"name": "full"}, "train": {"epochs": 2, "lr_scheduler": "cosine"}, "output_dir": "runs/b"},
    {"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "data/qa.jsonl"}, "method": {"name": "qlora"},
     "output_dir": "runs/c"},
    {"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "data/qa.jsonl"}, "method": {"name": "lora"},
     "train": {"liger_kernel": False}, "output_dir": "runs/d"},  # `bool | auto`: false is not auto
]


@pytest.mark.parametrize("value, widget", [("auto", "auto"), (True, "true"), (False, "false")])
def test_bool_or_auto_is_a_three_way_choice(specs, value, widget):
    spec = next(s for s in specs if s.id == "train.liger_kernel")
    assert spec.kind == "choice" and spec.choices == ["auto", "true", "false"]
    assert spec.default_widget() == "auto"  # left alone, the form writes nothing: auto stays auto
    assert form.to_widget(spec, value) == widget and form.from_widget(spec, widget) == value


@pytest.mark.parametrize("data", CONFIGS)
def test_yaml_to_form_to_yaml_is_the_same_config(specs, data):
    values, method, stage = form.config_to_values(specs, data)
    back = form.values_to_config(specs, values, method, stage)
    assert load_config_dict(back).model_dump() == load_config_dict(data).model_dump()


def test_form_defaults_plus_required_fields_validate(specs):
    values = {s.id: s.default_widget() for s in specs}
    values["model.name_or_path"], values["data.train"] = "builtin:tiny", "x.jsonl"
    data = form.values_to_config(specs, values, "lora", "sft")
    assert data == {"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "x.jsonl"}, "method": {"name": "lora"}}
    load_config_dict(data)


def test_a_bad_widget_value_names_its_key(specs):
    values = {s.id: s.default_widget() for s in specs}
    values["train.batch_size"] = "lots"
    with pytest.raises(UserError, match="train.batch_size"):
        form.values_to_config(specs, values, "lora", "sft")


def test_hidden_fields_are_not_written(specs):
    values = {s.id: s.default_widget() for s in specs}
    values.update({"model.name_or_path": "builtin:tiny", "data.train": "x.jsonl", "method.lora.r": 64})
    assert "r" not in form.values_to_config(specs, values, "full", "sft")["method"]
    assert form.values_to_config(specs, values, "lora", "sft")["method"]["r"] == 64


def test_unknown_key_in_loaded_yaml_is_the_cli_error(specs):
    with pytest.raises(UserError, match="learning_rat"):
        form.config_to_values(specs, {**CONFIGS[0], "train": {"learning_rat": 1}})


@pytest.mark.parametrize("path", ["../outside.jsonl", "/etc/passwd", "data/../../x", "~/x.jsonl", "a\x00b"])
def test_traversal_is_refused(tmp_path, path):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(UserError):
        ws.resolve(path)


def test_symlink_out_of_the_workspace_is_refused(tmp_path):
    ws = Workspace(tmp_path / "ws")
    (tmp_path / "secret.jsonl").write_text("{}\n")
    (ws.root / "link.jsonl").symlink_to(tmp_path / "secret.jsonl")
    with pytest.raises(UserError, match="outside the workspace"):
        ws.resolve("link.jsonl")


def test_config_paths_outside_the_workspace_are_refused(tmp_path):
    ws = Workspace(tmp_path / "ws")
    for bad in ({"data": {"train": "/etc/passwd"}}, {"data": {"train": "../x.jsonl"}}, {"output_dir": "../runs/x"},
                {"model": {"name_or_path": "/root/model"}}):
        with pytest.raises(UserError):
            confine_config(ws, bad)
    confine_config(ws, {"model": {"name_or_path": "Qwen/Qwen2.5-0.5B"}, "data": {"train": "data/a.jsonl"},
                        "output_dir": "runs/a"})


def test_uploads_keep_only_data_files_with_safe_names(tmp_path):
    ws = Workspace(tmp_path / "ws")
    src = tmp_path / "up.bin"
    src.write_text('{"instruction": "a", "output": "b"}\n')
    assert ws.save_upload(src, "../../evil.jsonl") == "data/evil.jsonl"
    assert ws.save_upload(src, "../../evil.jsonl") == "data/evil-2.jsonl"
    for name in ("model.pkl", "run.py", "weights.bin"):
        with pytest.raises(UserError, match="not a data file"):
            ws.save_upload(src, name)
    assert safe_filename("..\\..\\a b.csv") == "a_b.csv"


def test_both_languages_have_the_same_keys_and_every_used_key():
    en, zh = strings("en"), strings("zh")
    assert set(en) == set(zh)
    used = set()
    for path in [UI / "app.py", *(UI / "pages").glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r'(?:value|label|info|placeholder)="([a-z_]+\.[a-z_.]+)"', text))
        used |= set(re.findall(r'\bt\("([a-z_]+\.[a-z_.]+)"', text))
    used |= {f"page.{p}" for p in ("data", "train", "runs", "chat", "evaluate", "export")}
    used |= {f"runs.status.{s}" for s in ("running", "finished", "stopped", "failed", "new")}
    used |= {f"section.{s}" for s in form.SECTIONS} | {f"data.{a}" for a in ("clean", "dedup", "scrub", "split")}
    assert used - set(en) == set()
    different = [k for k in en if en[k] == zh[k]]
    assert different == [], f"untranslated: {different}"


def test_zh_descriptions_cover_most_fields(specs):
    from danlu.ui.i18n import describe

    zh = [describe(s, "zh") for s in specs]
    assert all("默认" in d or "必填" in d for d, s in zip(zh, specs) if s.kind != "enable")


@pytest.mark.parametrize("header,lang", [("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("en-US,en;q=0.9", "en"),
                                         ("fr-FR,zh;q=0.5", "zh"), (None, "en"), ("en;q=0.1,zh;q=0.9", "zh")])
def test_first_language_comes_from_the_browser(header, lang):
    assert lang_from_header(header) == lang


def test_t_formats_and_falls_back_to_english():
    assert t("data.saved", "zh", path="data/a.jsonl") == "已保存为 `data/a.jsonl`。"
    assert t("data.saved", "xx", path="p") == "Saved as `p`."


@pytest.mark.parametrize("host,auth,ok", [("127.0.0.1", None, True), ("0.0.0.0", None, False),
                                          ("0.0.0.0", "me:pw", True), ("127.0.0.1", "nocolon", False),
                                          ("192.168.1.5", ":pw", False)])
def test_binding_off_loopback_needs_auth(host, auth, ok):
    from danlu.ui.app import check_bind

    if ok:
        check_bind(host, auth)
    else:
        with pytest.raises(UserError):
            check_bind(host, auth)


def test_curves_split_train_and_eval_loss():
    from danlu.ui.pages.runs import curves

    loss, lr = curves([{"step": 1, "loss": 2.0, "lr": 1e-3}, {"step": 2, "eval_loss": 1.5}, {"bad": 1}])
    assert loss.to_dict("records") == [{"step": 1, "loss": 2.0, "series": "train"},
                                       {"step": 2, "loss": 1.5, "series": "eval"}]
    assert lr["lr"].tolist() == [1e-3]


def test_serve_args_confine_adapters(tmp_path):
    from danlu.ui.pages.export import serve_args

    ws = Workspace(tmp_path / "ws")
    (ws.root / "runs" / "a").mkdir(parents=True)
    assert serve_args(ws, "runs/a", "b=runs/a", 8001)[-2:] == ["--adapter", "b=runs/a"]
    with pytest.raises(UserError):
        serve_args(ws, "runs/a", "b=/etc", 8001)
