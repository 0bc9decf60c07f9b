"""The export consistency check: what the run trained with (danlu.json, the tokenizer's template,
generation_config.json, config.yaml) must agree; each way it can break is an error that says how
to fix it."""

from __future__ import annotations

import json
import shutil

import pytest

from danlu.errors import UserError
from danlu.export.check import check_hf_dir, trained_chat
from danlu.models.load import load_tokenizer
from tests.unit.serve.runs import trained_run


@pytest.fixture
def run(tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(trained_run("a"), dst)
    return dst


def check(run):
    art = run / "adapter"
    info = json.loads((art / "danlu.json").read_text())
    return trained_chat(art, load_tokenizer(str(art)), info)


def test_an_untouched_run_passes_and_reports_its_template(run):
    trained = check(run)
    assert trained.turn_end == "<|im_end|>" and trained.stop_token_ids == [2] and trained.source == "tokenizer"
    assert "<|im_start|>" in trained.template
    assert check_hf_dir(run / "adapter", trained)["eos_token_id"] == [2]


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def set_json(path, **values):
    data = json.loads(path.read_text())
    data.update(values)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("breakage, message, hint", [
    (lambda a: edit(a / "chat_template.jinja", "'<|im_end|>' + '\\n'", "'<|endoftext|>' + '\\n'"),
     "ends assistant turns with '<|endoftext|>'", "restore chat_template.jinja"),
    (lambda a: set_json(a / "generation_config.json", eos_token_id=[0]), "lacks the trained stop ids",
     "set eos_token_id to [2]"),
    (lambda a: (a / "generation_config.json").unlink(), "no generation_config.json", "eos_token_id: [2]"),
    (lambda a: set_json(a / "danlu.json", template="llama3"), "danlu's 'llama3' template", "restore"),
    (lambda a: (a / "chat_template.jinja").unlink(), "has none", "restore"),
    (lambda a: edit(a.parent / "config.yaml", "template: auto", "template: llama3"), "data.template: llama3",
     "export the run directory"),
])
def test_each_mismatch_is_an_error_with_a_fix(run, breakage, message, hint):
    breakage(run / "adapter")
    with pytest.raises(UserError) as caught:
        check(run)
    assert message in str(caught.value) and hint in str(caught.value)
    assert "mismatch" in str(caught.value)
