"""The READMEs' config reference tables are generated from the schema and must be current."""

from __future__ import annotations

from pathlib import Path

import pytest

from danlu.config.docs import render_into

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name, lang", [("README.md", "en"), ("README.zh-CN.md", "zh")])
def test_config_reference_is_current(name, lang):
    path = ROOT / name
    assert path.read_text(encoding="utf-8") == render_into(path, lang), (
        f"{name} is out of date: run `python -m danlu.config.docs`")


def test_reference_lists_every_contract_key():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for key in ("model.name_or_path", "data.train", "data.eval", "data.format", "data.on_bad_row", "data.overlong",
                "method.name", "stage", "train.max_steps", "train.epochs", "train.learning_rate", "train.batch_size",
                "train.grad_accum", "train.max_length", "train.seed", "train.save_steps", "train.deterministic",
                "output_dir"):
        assert f"`{key}`" in text, key


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_table_row_has_four_cells(lang):
    """A bare | in a description (data.format's alpaca | sharegpt ...) would split the row."""
    import re

    from danlu.config.docs import reference_markdown

    for row in reference_markdown(lang).splitlines():
        cells = re.split(r"(?<!\\)\|", row.strip())[1:-1]
        assert len(cells) == 4, row


def test_docs_ui_links_its_translation():
    assert "ui.zh-CN.md" in (ROOT / "docs" / "ui.md").read_text(encoding="utf-8")
    assert "ui.md" in (ROOT / "docs" / "ui.zh-CN.md").read_text(encoding="utf-8")
