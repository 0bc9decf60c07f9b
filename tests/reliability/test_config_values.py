"""RELIABILITY case 17 (issue 19 item 7, config half): a value that passes the type check but means
nothing (lr ≤ 0, NaN, inf, rank 0, a negative seed ...) is refused at config time, naming the key
and the file:line it came from."""

from __future__ import annotations

import pytest

from danlu.config.load import load_config
from danlu.errors import ConfigError

BASE = """\
model:
  name_or_path: builtin:tiny
data:
  train: d.jsonl
method:
  name: {method}
{method_extra}train:
  max_steps: 2
{train_extra}{tail}"""


def write(tmp_path, *, method="lora", method_extra="", train_extra="", tail=""):
    path = tmp_path / "cfg.yaml"
    path.write_text(BASE.format(method=method, method_extra=method_extra, train_extra=train_extra, tail=tail),
                    encoding="utf-8")
    return path


# (section text, key named in the error, its line in cfg.yaml)
BAD = [
    ({"train_extra": "  learning_rate: -1\n"}, "train.learning_rate", 9),
    ({"train_extra": "  learning_rate: 0\n"}, "train.learning_rate", 9),
    ({"train_extra": "  learning_rate: .nan\n"}, "train.learning_rate", 9),
    ({"train_extra": "  learning_rate: .inf\n"}, "train.learning_rate", 9),
    ({"train_extra": "  epochs: .inf\n"}, "train.epochs", 9),
    ({"train_extra": "  epochs: 0\n"}, "train.epochs", 9),
    ({"train_extra": "  weight_decay: .nan\n"}, "train.weight_decay", 9),
    ({"train_extra": "  max_grad_norm: .inf\n"}, "train.max_grad_norm", 9),
    ({"train_extra": "  seed: -1\n"}, "train.seed", 9),
    ({"train_extra": "  seed: 4294967296\n"}, "train.seed", 9),
    ({"train_extra": "  batch_size: 0\n"}, "train.batch_size", 9),
    ({"train_extra": "  grad_accum: 0\n"}, "train.grad_accum", 9),
    ({"train_extra": "  max_length: 0\n"}, "train.max_length", 9),
    ({"train_extra": "  max_steps: 0\n"}, "train.max_steps", 9),
    ({"train_extra": "  warmup_ratio: .nan\n"}, "train.warmup_ratio", 9),
    ({"method_extra": "  r: 0\n"}, "method.r", 7),
    ({"method_extra": "  r: -4\n"}, "method.r", 7),
    ({"method_extra": "  alpha: 0\n"}, "method.alpha", 7),
    ({"method_extra": "  alpha: .nan\n"}, "method.alpha", 7),
    ({"method_extra": "  dropout: 1.0\n"}, "method.dropout", 7),
    ({"method": "adalora", "method_extra": "  alpha: -2\n"}, "method.alpha", 7),
    ({"tail": "dpo:\n  beta: .inf\n"}, "dpo.beta", 10),
    ({"tail": "eval:\n  early_stopping:\n    min_delta: .nan\n"},
     "eval.early_stopping.min_delta", 11),
]


@pytest.mark.parametrize(("parts", "key", "line"), BAD, ids=[f"{k}={list(p.values())[-1].split(':')[-1].strip()}"
                                                            for p, k, _ in BAD])
def test_meaningless_value_is_refused_with_key_and_line(tmp_path, parts, key, line):
    path = write(tmp_path, **parts)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert key in str(err.value)
    assert f"{path}:{line}" in str(err.value)


@pytest.mark.parametrize("override", ["train.learning_rate=nan", "train.learning_rate=-1e-4", "method.r=0",
                                      "train.seed=-3"])
def test_meaningless_override_is_refused(tmp_path, override):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path), [override])
    assert override.split("=")[0] in str(err.value) and "override" in str(err.value)


def test_sensible_values_still_pass(tmp_path):
    cfg = load_config(write(tmp_path, method_extra="  r: 1\n  alpha: 0.5\n  dropout: 0\n",
                            train_extra="  learning_rate: 1e-6\n  seed: 0\n  max_length: 8\n"))
    assert cfg.method.r == 1 and cfg.train.seed == 0 and cfg.train.learning_rate == 1e-6
    assert load_config(write(tmp_path), ["train.max_steps=-1", "train.learning_rate=auto"]).train.max_steps == -1


def test_bounded_numbers_keep_their_ui_widget():
    from danlu.config.schema import TrainConfig
    from danlu.methods.lora import Lora
    from danlu.ui.form import classify

    assert classify(TrainConfig.model_fields["learning_rate"].annotation)["kind"] == "auto_number"
    assert classify(Lora.model_fields["r"].annotation) == {"optional": False, "kind": "auto_number", "item": int}


def test_duplicate_key_is_refused_naming_both_lines(tmp_path):
    path = write(tmp_path, train_extra="  learning_rate: 1e-4\n  max_steps: 5\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:10" in str(err.value) and "first at line 8" in str(err.value)
    assert "'train.max_steps'" in str(err.value)


def test_merge_keys_and_lists_of_mappings_still_load(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("base: &b {max_steps: 2, seed: 3}\nmodel: {name_or_path: builtin:tiny}\n"
                    "data: {train: [a.jsonl, b.jsonl]}\nmethod: {name: lora}\ntrain:\n  <<: *b\n  seed: 4\n",
                    encoding="utf-8")
    from danlu.config.load import read_yaml

    data, lines = read_yaml(path)
    assert data["train"] == {"max_steps": 2, "seed": 4} and lines[("train", "seed")] == 7


@pytest.mark.parametrize(("encode", "needle", "where"), [
    (lambda t: t.encode("utf-16"), "UTF-16", "cfg.yaml:"),
    (lambda t: t.replace("tiny", "tiny  # café").encode("latin-1"), "0xe9", "cfg.yaml:2"),
])
def test_config_not_utf8_is_refused(tmp_path, encode, needle, where):
    path = write(tmp_path)
    path.write_bytes(encode(path.read_text(encoding="utf-8")))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value) and where in str(err.value) and "UTF-8" in str(err.value)


def test_utf8_bom_is_fine(tmp_path):
    path = write(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_config(path).model.name_or_path == "builtin:tiny"


@pytest.mark.parametrize("target", ["/dev/null", "FILE", "FILE/run"])
def test_output_dir_that_is_not_a_directory_is_refused(tmp_path, target):
    (tmp_path / "a_file").write_text("x")
    out = target.replace("FILE", str(tmp_path / "a_file"))
    path = write(tmp_path, tail=f"output_dir: {out}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "output_dir" in str(err.value) and f"{path}:9" in str(err.value) and "directory" in str(err.value)


def test_cli_answers_a_nonsense_config_with_exit_2(tmp_path):
    from tests.conftest import run_cli

    path = write(tmp_path, method_extra="  r: 0\n", train_extra="  learning_rate: .nan\n  seed: -1\n")
    proc = run_cli("train", str(path), timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for key, line in (("method.r", 7), ("train.learning_rate", 10), ("train.seed", 11)):
        assert f"cfg.yaml:{line}: '{key}'" in proc.stderr, proc.stderr
