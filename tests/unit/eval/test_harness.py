"""lm-evaluation-harness: not installed here, so asking for it is a clear error (exit 2, what to
install); with a stand-in `lm_eval` module the adapter hands the loaded model to HFLM and
returns the harness's numbers."""

from __future__ import annotations

import sys
from types import ModuleType, SimpleNamespace

import pytest

from danlu.errors import UserError
from danlu.eval.harness import harness_available, run_harness


def test_missing_harness_is_a_clear_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import fails as if not installed
    assert not harness_available()
    with pytest.raises(UserError, match="pip install lm-eval") as err:
        run_harness(SimpleNamespace(model=None, tokenizer=None), ["mmlu"])
    assert err.value.exit_code == 2 and "--bench" in str(err.value)


def test_adapter_hands_the_loaded_model_to_the_harness(monkeypatch):
    calls = {}

    class HFLM:
        def __init__(self, pretrained, tokenizer, batch_size):
            calls["hflm"] = (pretrained, tokenizer, batch_size)

    def simple_evaluate(model, tasks, num_fewshot, limit):
        calls["evaluate"] = (model, tasks, num_fewshot, limit)
        return {"results": {"ceval-valid": {"acc,none": 0.25, "alias": "ceval-valid"}}}

    lm_eval = ModuleType("lm_eval")
    lm_eval.simple_evaluate = simple_evaluate
    models, hf = ModuleType("lm_eval.models"), ModuleType("lm_eval.models.huggingface")
    hf.HFLM = HFLM
    for name, mod in (("lm_eval", lm_eval), ("lm_eval.models", models), ("lm_eval.models.huggingface", hf)):
        monkeypatch.setitem(sys.modules, name, mod)
    loaded = SimpleNamespace(model="MODEL", tokenizer="TOK")
    out = run_harness(loaded, ["ceval-valid"], num_fewshot=5, limit=10, batch_size=4)
    assert calls["hflm"] == ("MODEL", "TOK", 4)
    assert calls["evaluate"][1:] == (["ceval-valid"], 5, 10)
    assert out == {"ceval-valid": {"acc,none": 0.25}}
