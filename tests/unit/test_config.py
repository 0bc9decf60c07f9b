"""Config: typed sections, strict keys with suggestions and file:line, overrides, every example parses."""

from __future__ import annotations

from pathlib import Path

import pytest

from danlu.config.load import load_config, load_config_dict, parse_override
from danlu.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BASE = {"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "x.jsonl"}, "method": {"name": "lora"}}


def examples():
    return sorted(p for p in (ROOT / "examples").rglob("*.yaml") if not {"accelerate", "launch"} & set(p.parts))


@pytest.mark.parametrize("path", examples(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_config_parses(path):
    cfg = load_config(path)
    assert cfg.model.name_or_path
    assert cfg.method.name


def test_defaults_and_contract_keys():
    cfg = load_config_dict(BASE)
    assert cfg.stage == "sft"
    for key in ("max_steps", "epochs", "learning_rate", "batch_size", "grad_accum", "max_length", "seed",
                "save_steps", "deterministic"):
        assert hasattr(cfg.train, key)
    for key in ("train", "eval", "format", "on_bad_row", "overlong"):
        assert hasattr(cfg.data, key)
    assert cfg.output_dir


@pytest.mark.parametrize(
    "section, bad, expected",
    [
        ("train", {"learnin_rate": 1e-4}, "did you mean 'train.learning_rate'"),
        ("method", {"name": "lora", "rank": 8}, "method.rank"),
        ("method", {"name": "lora", "alpah": 8}, "did you mean 'method.alpha'"),
        ("data", {"train": "x", "fromat": "alpaca"}, "did you mean 'data.format'"),
        ("model", {"name_or_path": "x", "trust_remote": True}, "did you mean 'model.trust_remote_code'"),
    ],
)
def test_unknown_key_names_key_and_closest(section, bad, expected):
    data = {**BASE, section: bad}
    with pytest.raises(ConfigError) as err:
        load_config_dict(data)
    assert expected in str(err.value)


def test_unknown_top_level_and_method_and_stage():
    with pytest.raises(ConfigError, match="did you mean 'model'"):
        load_config_dict({**BASE, "modle": {}})
    with pytest.raises(ConfigError, match="unknown method 'lorra'.*did you mean 'lora'"):
        load_config_dict({**BASE, "method": {"name": "lorra"}})
    with pytest.raises(ConfigError, match="did you mean 'sft'"):
        load_config_dict({**BASE, "stage": "sfft"})


def test_error_names_file_and_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  name_or_path: builtin:tiny\ndata:\n  train: x.jsonl\nmethod:\n  name: lora\n"
                 "train:\n  batch_size: 2\n  learnin_rate: 1e-4\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert f"{p}:9" in str(err.value)


def test_type_errors_are_readable():
    with pytest.raises(ConfigError) as err:
        load_config_dict({**BASE, "train": {"learning_rate": "fast"}})
    text = str(err.value)
    assert "train.learning_rate" in text and "'fast'" in text and "number" in text


def test_overrides_apply_and_are_typed(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: {name_or_path: builtin:tiny}\ndata: {train: x.jsonl}\nmethod: {name: lora}\n")
    cfg = load_config(p, ["train.learning_rate=1e-4", "method.r=32", "train.deterministic=true",
                          "data.eval=e.jsonl"])
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.method.r == 32 and cfg.train.deterministic is True and cfg.data.eval == "e.jsonl"
    with pytest.raises(ConfigError, match="override 'train.lr=1'.*learning_rate"):
        load_config(p, ["train.lr=1"])
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


@pytest.mark.parametrize("short, field, value", [
    ("qlora", "quantize", "nf4"), ("dora", "use_dora", True), ("rslora", "use_rslora", True),
    ("pissa", "init", "pissa"), ("lora_plus", "lora_plus_ratio", 16.0),
])
def test_lora_shorthands(short, field, value):
    cfg = load_config_dict({**BASE, "method": {"name": short}})
    assert cfg.method.name == "lora" and getattr(cfg.method, field) == value


def test_lora_accepts_peft_names():
    cfg = load_config_dict({**BASE, "method": {"name": "lora", "r": 8, "lora_alpha": 32, "lora_dropout": 0.1}})
    assert cfg.method.lora_alpha == 32 and cfg.method.dropout == 0.1


def test_qwen_user_config_is_accepted(tmp_path):
    """The README's config for a real model (no download needed to validate it)."""
    cfg = load_config(ROOT / "examples" / "qwen2.5-0.5b-lora.yaml")
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-0.5B-Instruct" and cfg.method.name == "lora"
