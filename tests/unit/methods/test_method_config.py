"""Invalid combinations fail at config time with the reason; every method is a config value
with its options documented; the CLI exits 2 for them without a traceback."""

from __future__ import annotations

import pytest

from danlu.config.load import load_config_dict
from danlu.errors import ConfigError, UserError
from danlu.methods.registry import METHODS

BASE = {"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "x.jsonl"}}
ALL = ["full", "freeze", "lora", "qlora", "dora", "lora_plus", "rslora", "pissa", "adalora", "ia3", "prefix",
       "prompt", "p_tuning", "adapter", "bitfit"]


def cfg(method: dict, model: str = "builtin:tiny"):
    return load_config_dict({**BASE, "model": {"name_or_path": model}, "method": method})


@pytest.mark.parametrize("name", ALL)
def test_every_method_is_a_config_value_with_documented_options(name):
    method = cfg({"name": name}).method
    assert METHODS.canonical(name) == method.name
    assert method.trains and method.memory_class and method.inference_cost
    for field_name, field in type(method).model_fields.items():
        assert field_name == "name" or field.description, f"{name}.{field_name} has no description"


@pytest.mark.parametrize(
    "method, reason",
    [
        ({"name": "full", "quantize": "nf4"}, "'quantize' is an option of lora, not of full: an optimizer cannot update"),
        ({"name": "ia3", "quantize": "int8"}, "'quantize' is an option of lora, not of ia3"),
        ({"name": "bitfit", "r": 8}, "'r' is an option of"),
        ({"name": "qlora", "init": "pissa"}, "init 'pissa' rewrites the base weights"),
        ({"name": "lora", "quantize": "nf4", "init": "olora"}, "init 'olora' rewrites the base weights"),
        ({"name": "adalora", "init_r": 4, "target_r": 8}, "must not exceed init_r"),
        ({"name": "freeze", "layers": 0}, "trains nothing"),
        ({"name": "prompt", "num_virtual_tokens": 0}, "num_virtual_tokens"),
        ({"name": "adapter", "bottleneck": 0}, "bottleneck"),
    ],
)
def test_invalid_combinations_fail_when_the_config_is_read(method, reason):
    with pytest.raises(ConfigError) as err:
        cfg(method)
    assert reason in str(err.value)


@pytest.mark.parametrize(
    "method, model, reason",
    [
        ({"name": "bitfit"}, "builtin:tiny-llama", "has none"),
        ({"name": "freeze", "layers": 3}, "builtin:tiny", "has 2 blocks"),
        ({"name": "freeze", "modules": ["mlp", "attention"]}, "builtin:tiny", "no module named attention"),
    ],
)
def test_checks_against_the_model_run_before_any_weight_is_loaded(method, model, reason):
    c = cfg(method, model)
    with pytest.raises(ConfigError) as err:
        c.method.check(c)
    assert reason in str(err.value)


def test_bitfit_without_biases_names_models_that_have_them():
    c = cfg({"name": "bitfit"}, "builtin:tiny-llama")
    with pytest.raises(ConfigError) as err:
        c.method.check(c)
    text = str(err.value)
    assert "builtin:tiny-llama (llama)" in text and "builtin:tiny" in text.split("hint:")[1] and "Qwen2" in text
    ok = cfg({"name": "bitfit"}, "builtin:tiny")
    ok.method.check(ok)  # Qwen2-shaped: q/k/v biases
    from danlu.methods.table import trainable_on

    assert "has none" in trainable_on("builtin:tiny-llama", c.method)["error"]  # the `danlu methods` row


@pytest.fixture
def danlu_logger():
    """main() points the danlu logger at this test's (captured) stderr: put it back afterwards."""
    import logging

    logger = logging.getLogger("danlu")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_cli_exits_2_with_the_reason_and_no_traceback(tmp_path, capsys, danlu_logger):
    """The real entry point, in this process: a bad combination is exit 2 before any training."""
    import yaml

    from danlu.cli.main import main

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**BASE, "model": {"name_or_path": "builtin:tiny-llama"},
                                    "method": {"name": "bitfit"}, "output_dir": str(tmp_path / "run")}))
    with pytest.raises(SystemExit) as code:
        main(["train", str(path), "--dry-run"])
    err = capsys.readouterr().err
    assert code.value.code == 2 and "bitfit" in err and "Traceback" not in err
    path.write_text(yaml.safe_dump({**BASE, "method": {"name": "full", "quantize": "nf4"}}))
    with pytest.raises(SystemExit) as code:
        main(["train", str(path), "--dry-run"])
    err = capsys.readouterr().err
    assert code.value.code == 2 and f"{path}:" in err and "only a method that keeps the base frozen" in err


def test_merge_of_a_method_that_cannot_merge_says_why():
    for name, words in [("prefix", "virtual tokens"), ("adapter", "non-linearity")]:
        with pytest.raises(UserError, match=f"cannot be merged.*{words}"):
            cfg({"name": name}).method.require_mergeable()
    with pytest.raises(UserError, match="already saves the whole model"):
        cfg({"name": "freeze"}).method.require_mergeable()


@pytest.mark.parametrize(
    "method, where",
    [({"name": "lora", "target_modules": ["q_projj"]}, "method.target_modules"),
     ({"name": "adapter", "target_modules": ["nothing_here"]}, "method.target_modules")],
)
def test_unknown_target_modules_name_the_real_ones(method, where):
    from danlu.methods.base import MethodContext
    from danlu.models.load import load_model

    model = load_model("builtin:tiny")
    with pytest.raises(ConfigError) as err:
        cfg(method).method.apply(model, MethodContext())
    assert where in str(err.value) and "q_proj" in str(err.value) and "down_proj" in str(err.value)


def test_adalora_schedule_must_fit_the_run(tmp_path):
    from tests.unit.methods.harness import config
    from danlu.train.runner import build

    c = config(tmp_path, {"name": "adalora", "tinit": 3, "tfinal": 2}, steps=5)
    with pytest.raises(ConfigError, match="leave no pruning steps in a run of 5"):
        build(c, run_dir=tmp_path, is_main=False)


def test_adalora_refuses_to_resume_and_says_why():
    with pytest.raises(UserError, match="cannot continue from a checkpoint"):
        cfg({"name": "adalora"}).method.check_resume()
    cfg({"name": "lora"}).method.check_resume()  # the others resume (crash-safe checkpoints)


@pytest.mark.parametrize("doc", ["docs/methods.md", "docs/methods.zh-CN.md"])
def test_user_docs_cover_every_method_and_option(doc):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / doc).read_text(encoding="utf-8")
    for name, cls in METHODS:
        for label in (name, *METHODS.aliases_of(name)):
            assert f"`{label}`" in text, f"{doc}: method {label}"
        for field_name, field in cls.model_fields.items():
            if field_name != "name":
                assert f"`{field.alias or field_name}`" in text, f"{doc}: {name}.{field.alias or field_name}"
