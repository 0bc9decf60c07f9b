"""Every method of `danlu methods` (each shorthand once) trains 10 steps on the real SmolLM2-135M-Instruct
weights with falling loss: the mean of the last 3 logged losses is below the mean of the first 3.
Most run in-process (one process loads torch and the converted model once); lora, prompt and ia3
go through the real CLI. bitfit has nothing to train on SmolLM2 (a llama: no bias terms) and must
say so with exit 2 instead."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import QA, run_cli, write_jsonl
from tests.real.conftest import first_last, losses, needs_smollm2, small_config

pytestmark = [pytest.mark.real, needs_smollm2]

# method section and learning rate per registered name; a method added later must be added here
METHODS = {
    "full": ({"name": "full"}, 1e-4),
    "freeze": ({"name": "freeze"}, 2e-4),
    "lora": ({"name": "lora", "r": 8}, 2e-3),
    "qlora": ({"name": "qlora", "r": 8}, 2e-3),
    "dora": ({"name": "dora", "r": 8}, 2e-3),
    "lora_plus": ({"name": "lora_plus", "r": 8}, 1e-3),
    "rslora": ({"name": "rslora", "r": 8}, 1e-3),
    "pissa": ({"name": "pissa", "r": 8}, 1e-3),
    "adalora": ({"name": "adalora"}, 5e-3),
    "adapter": ({"name": "adapter"}, 2e-3),
    "p_tuning": ({"name": "p_tuning", "num_virtual_tokens": 8}, 1e-2),
    "prefix": ({"name": "prefix", "num_virtual_tokens": 8}, 1e-2),
    "prompt": ({"name": "prompt", "num_virtual_tokens": 8}, 3e-2),
    "ia3": ({"name": "ia3"}, 1e-2),
}
THROUGH_CLI = {"lora", "prompt", "ia3"}
NO_BIASES = {"bitfit"}


def test_the_table_covers_every_registered_method():
    from danlu.methods.registry import METHODS as REGISTRY

    import danlu.methods  # noqa: F401  (registers them)

    assert set(REGISTRY.names(with_aliases=True)) == set(METHODS) | NO_BIASES


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rows = [{"instruction": q, "input": "", "output": a} for q, a in QA]
    return write_jsonl(tmp_path_factory.mktemp("methods") / "qa.jsonl", rows)


@pytest.mark.parametrize("name", list(METHODS))
def test_method_trains_real_weights_with_falling_loss(name, data, tmp_path):
    method, lr = METHODS[name]
    cfg = small_config(tmp_path / "run", data, method=method, steps=10, lr=lr)
    if name in THROUGH_CLI:
        path = tmp_path / "cfg.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        res = run_cli("train", str(path))
        assert res.returncode == 0, res.stderr[-3000:]
    else:
        from danlu.config.load import load_config_dict
        from danlu.train.runner import run_training

        run_training(load_config_dict(cfg))
    values = losses(tmp_path / "run")
    assert len(values) == 10, values
    first, last = first_last(values)
    assert last < first, f"{name}: loss did not fall: {values}"


def test_bitfit_refuses_smollm2_which_has_no_biases(data, tmp_path):
    path = tmp_path / "cfg.yaml"
    cfg = small_config(tmp_path / "run", data, method={"name": "bitfit"})
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    res = run_cli("train", str(path))
    assert res.returncode == 2, res.stderr[-3000:]
    assert "bitfit" in res.stderr and "has none" in res.stderr and "Traceback" not in res.stderr
