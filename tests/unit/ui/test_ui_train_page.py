"""The Train page as LlamaBoard lays it out: the first screen's fields in words (both languages), the
rest generated from the schema into collapsed accordions (a new key needs no UI code), the pickers,
the exact command the preview shows, and the live panel's progress / ETA."""

from __future__ import annotations

import json

import pytest
from pydantic import Field

from danlu.ui import choices, form
from danlu.ui.i18n import field_info, field_label
from danlu.ui.workspace import Workspace


def _blocks(demo) -> dict:
    return {getattr(b, "elem_id", None): b for b in demo.blocks.values() if getattr(b, "elem_id", None)}


def test_a_new_config_key_appears_in_its_section_without_ui_code(tmp_path, monkeypatch):
    import gradio as gr

    from danlu.config import schema
    from danlu.ui.app import build_app

    class Train(schema.TrainConfig):
        my_new_knob: int = Field(7, description="A knob added to the schema only.")

    monkeypatch.setattr(schema, "TrainConfig", Train)
    demo = build_app(Workspace(tmp_path / "ws"))
    blocks = _blocks(demo)
    knob = blocks["f-train-my_new_knob"]
    assert knob.label == "My new knob" and knob.value == 7
    assert knob.info.startswith("train.my_new_knob — A knob added")
    parent = knob.parent
    while parent is not None and not isinstance(parent, gr.Accordion):
        parent = parent.parent
    assert parent is blocks["train-more-train"] and parent.open is False  # collapsed, in its section
    assert blocks["f-train-learning_rate"].label == "Learning rate"  # the first screen is not in an accordion


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_first_screen_labels_are_words_with_the_key_as_info(lang):
    from danlu.ui.pages.train import PRIMARY

    specs = {s.id: s for s in form.form_specs()}
    for fid in PRIMARY - {"method", "stage", "overwrite"}:
        label = field_label(specs[fid], lang)
        assert "." not in label and "_" not in label, label
        assert field_info(specs[fid], lang, short=True) == ".".join(specs[fid].path)
        if lang == "zh":
            assert any("\u4e00" <= ch <= "\u9fff" for ch in label), label


def test_pickers_offer_builtin_planner_lf_entries_and_checkpoints(tmp_path):
    from danlu.models.builtin import SPECS

    ws = Workspace(tmp_path / "ws")
    models = choices.model_choices(ws)
    assert models[0] == "builtin:tiny" and "Qwen/Qwen2.5-0.5B" in models
    assert "google-bert/bert-base-uncased" not in models  # encoders are not chat models
    from danlu.models.packaged import PACKAGED, installed

    packaged = [f"pkg:{k}" for k, e in PACKAGED.items() if installed(e)]
    assert models[len(SPECS):len(SPECS) + len(packaged)] == packaged  # real models right after builtin
    (ws.dir("data") / "qa.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    (ws.root / "data" / "dataset_info.json").write_text(json.dumps({"alpaca_demo": {"file_name": "qa.jsonl"}}))
    assert choices.dataset_choices(ws) == ["data/qa.jsonl", "lf:alpaca_demo"]
    run = ws.root / "runs" / "a"
    for sub in ("checkpoints/step-5", "checkpoints/step-10", "adapter"):
        (run / sub).mkdir(parents=True)
    (run / "config.yaml").write_text("{}")
    (run / "adapter" / "danlu.json").write_text("{}")
    assert choices.chat_targets(ws) == ["runs/a", "runs/a/adapter", "runs/a/checkpoints/step-10",
                                        "runs/a/checkpoints/step-5"]


def test_preview_is_the_command_start_runs(tmp_path):
    from danlu.ui.launch import planned_command
    from danlu.ui.pages.train_actions import preview

    ws = Workspace(tmp_path / "ws")
    specs = form.form_specs()
    values = {s.id: s.default_widget() for s in specs}
    values.update({"model.name_or_path": "builtin:tiny", "data.train": ["data/a.jsonl", "lf:demo"],
                   "output_dir": "runs/exp1"})
    command, text = preview(ws, specs, values, "lora", "sft", True)
    assert command.splitlines()[-1] == "danlu train configs/exp1.yaml --overwrite"
    data = form.values_to_config(specs, values, "lora", "sft")
    assert data["data"]["train"] == ["data/a.jsonl", "lf:demo"]  # the multi-select writes a list
    assert planned_command(ws, data, overwrite=True)[1] == ["train", "configs/exp1.yaml", "--overwrite"]
    assert text.startswith("# configs/exp1.yaml\n") and "builtin:tiny" in text


def test_eta_from_the_pace_seen_and_no_eta_when_not_training():
    from danlu.ui.live import eta_seconds, fmt_duration, progress_html

    assert eta_seconds("r", "running", 10, 110, now=100.0) is None  # first sight: no pace yet
    assert eta_seconds("r", "running", 20, 110, now=110.0) == pytest.approx(90.0)  # 1 s / step, 90 left
    assert eta_seconds("r", "stopped", 20, 110, now=120.0) is None
    assert fmt_duration(90) == "1:30" and fmt_duration(3725) == "1:02:05"
    assert "ETA 1:30" in progress_html(20, 110, "1:30", "en") and "ETA" not in progress_html(20, 110, None, "en")
    assert "预计剩余" in progress_html(20, 110, "1:30", "zh")


def test_the_live_panel_hides_empty_curves(tmp_path):
    import gradio as gr

    from danlu.ui.jobs import Jobs
    from danlu.ui.live import plot_updates, snapshot

    ws = Workspace(tmp_path / "ws")
    (ws.root / "runs" / "a").mkdir(parents=True)
    snap = snapshot(ws, Jobs(), "runs/a", "en")
    assert [u.get("visible") for u in plot_updates(gr, snap)] == [False, False]
    (ws.root / "runs" / "a" / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0, "lr": 0.001}\n')
    snap = snapshot(ws, Jobs(), "runs/a", "en")
    assert [u.get("visible") for u in plot_updates(gr, snap)] == [True, True]
