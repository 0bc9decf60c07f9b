"""Issue 20's small frictions, one test each (the danlu CLI in this process, on builtin:tiny):
the methods table follows the terminal width; artefacts are readable by others (0644, not 0600);
`data render` marks trained spans in text when its output has no colour; `data scrub --allow`;
`data convert --to preference` on SFT rows says so; clean and validate count the same rows;
`danlu merge` says its result once; the UI's serve snippet names the served model; bench prints
small figures with their digits."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tests.conftest import write_jsonl
from tests.e2e.test_stages_a import cli


def test_methods_table_follows_the_terminal_width(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    code, out, err = cli(capsys, "methods")
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "lora" in out


def test_weight_files_get_normal_modes(tmp_path):
    import torch
    from safetensors.torch import save_file

    from danlu.files import normal_modes

    (tmp_path / "art" / "sub").mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "art" / "sub" / "model.safetensors"))
    assert stat.S_IMODE(os.stat(tmp_path / "art" / "sub" / "model.safetensors").st_mode) == 0o600  # safetensors' own
    old = os.umask(0o022)
    try:
        normal_modes(tmp_path / "art")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "art" / "sub" / "model.safetensors").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "art" / "sub").st_mode) == 0o755


def test_render_piped_marks_trained_spans_in_text(capsys, qa_file):
    code, out, err = cli(capsys, "data", "render", str(qa_file), "-n", "1")
    assert code == 0, err
    assert out.count("⟦") >= 2 and out.count("⟦") == out.count("⟧")  # legend + the answer
    assert "A help-desk product" in out.split("⟦", 2)[2]  # the answer sits inside a marked span
    assert "\x1b[" not in out


def test_scrub_allow_list(capsys, tmp_path):
    src = write_jsonl(tmp_path / "s.jsonl", [{"instruction": "mail?", "output": "Write to support@acme.com or to "
                                              "bob.lee@gmail.com; hotline 400-800-1234."}])
    allow = tmp_path / "allow.txt"
    allow.write_text("# our own contacts\n400 800 1234\n")
    code, out, err = cli(capsys, "data", "scrub", str(src), "-o", str(tmp_path / "o.jsonl"), "--allow", "@acme.com",
                         "--allow-file", str(allow), "--json")
    assert code == 0, err
    text = json.loads((tmp_path / "o.jsonl").read_text())["output"]
    assert "support@acme.com" in text and "400-800-1234" in text and "<EMAIL>" in text and "bob" not in text
    assert json.loads(out)["counts"]["kept (allow-list)"] == 2


def test_convert_sft_rows_to_preference_says_what_they_are(capsys, qa_file, tmp_path):
    code, out, err = cli(capsys, "data", "convert", str(qa_file), "--to", "preference", "-o", str(tmp_path / "p.jsonl"))
    assert code == 2
    assert "SFT rows" in err and "rejected" in err and "fix the row" not in err


def test_clean_and_validate_count_the_same_rows(capsys, tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(55)]
    src = write_jsonl(tmp_path / "d.jsonl", rows[:30] + ["{not json"] + rows[30:])
    code, out, _ = cli(capsys, "data", "validate", str(src), "--json")
    validated = json.loads(out)
    code, out, err = cli(capsys, "data", "clean", str(src), "--on-bad-row", "skip", "-o", str(tmp_path / "c.jsonl"),
                         "--json")
    assert code == 0, err
    cleaned = json.loads(out)
    assert validated["rows_in"] == cleaned["rows_in"] == 56
    assert cleaned["rows_out"] + sum(cleaned["dropped"].values()) == cleaned["rows_in"]


def test_merge_says_its_result_once(capsys, tmp_path):
    code, out, err = cli(capsys, "merge", "builtin:tiny", "builtin:tiny", "-o", str(tmp_path / "m"))
    assert code == 0, err
    assert (out + err).count("merged 2 models") == 1


def test_ui_serve_snippet_names_the_served_model(tmp_path):
    from danlu.serve.adapters import served_model_name
    from danlu.ui.pages.export import snippets

    (tmp_path / "runs" / "my-first-run" / "adapter").mkdir(parents=True)
    (tmp_path / "runs" / "my-first-run" / "adapter" / "danlu.json").write_text("{}")
    assert served_model_name(str(tmp_path / "runs" / "my-first-run")) == "my-first-run"
    assert served_model_name("builtin:tiny") == "builtin:tiny"
    text = snippets(8000, "my-first-run")
    assert '"my-first-run"' in text and '"default"' not in text


@pytest.mark.parametrize("value, shown", [(0.0166, "0.0166"), (1234.56, "1,234.6"), (0.98, "0.98"), (12, "12")])
def test_bench_figures_keep_their_digits(value, shown):
    from danlu.cli.bench import fmt, percent

    assert fmt(value) == shown
    assert percent(0.0166) == "1.66%"
