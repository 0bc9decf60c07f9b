"""The merge check is relative to the logits' scale plus top-1 agreement: fp32 rounding on large
logits passes (the absolute 1e-4 refused correct merges on real SmolLM2), a wrong merge stops the
export and the message shows the numbers instead of calling a correct merge wrong."""

from __future__ import annotations

import pytest
import torch

from danlu.errors import DanluError
from danlu.export import merge
from tests.unit.serve.runs import peft_adapter


def _logits(*rows):
    return [torch.tensor(rows, dtype=torch.float32)]


REF = ((40.0, 1.0, 0.0), (0.0, 30.0, -40.0))
TIE = ((40.0, 1.0, 0.0), (0.0, 30.0, 30.0 - 1e-4))


@pytest.mark.parametrize("reference, other, passes", [
    (REF, REF, True),
    # fp32 rounding on logits of scale 40: 1.8e-4 absolute is 4.5e-6 relative (the SmolLM2 case)
    (REF, ((40.0 + 1.8e-4, 1.0, 0.0), (0.0, 30.0 - 1.8e-4, -40.0)), True),
    # a near tie (gap 1e-4 ≤ 2 x 1e-4 x 40) may swap within the tolerance
    (TIE, ((40.0, 1.0, 0.0), (0.0, 30.0, 30.0 + 2e-4)), True),
    # 1e-2 relative: far more than rounding
    (REF, ((40.4, 1.0, 0.0), (0.0, 30.0, -40.0)), False),
    # a clear top-1 change (gap 0.5 is no near tie), whatever the relative error
    (TIE, ((40.0, 1.0, 0.0), (0.0, 30.0, 30.5)), False),
])
def test_verdict_is_relative_to_the_logit_scale(reference, other, passes):
    error = merge.logit_error(_logits(*reference), _logits(*other))
    assert error["scale"] == 40.0
    assert (merge.merge_verdict(error) is None) is passes


def test_the_refusal_shows_the_numbers():
    error = merge.logit_error(_logits((40.0, 1.0, 0.0)), _logits((40.0, 41.0, 0.0)))
    why = merge.merge_verdict(error)
    assert "4.00e+01" in why and "of the logits' scale" in why and "differs on 1 of 1" in why


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A random (B ≠ 0) LoRA adapter on builtin:tiny with the generation config a run writes."""
    import shutil

    from transformers import GenerationConfig

    out = tmp_path_factory.mktemp("merge") / "adapter"
    shutil.copytree(peft_adapter("merge-check"), out)
    GenerationConfig(eos_token_id=[2]).save_pretrained(str(out))
    return out


def test_a_correct_merge_passes(adapter):
    source = merge.open_source(str(adapter))
    prompts = merge.probe_ids(source.tokenizer, source.trained)
    _, _, error = merge.merged_model(source, prompts)
    assert error["max_rel"] <= merge.MERGE_TOLERANCE and error["top1_disagree_beyond_ties"] == 0


def test_a_wrong_merge_is_refused(adapter, monkeypatch):
    """The adapter folded in with twice its scale (a classic alpha/r slip) must stop the export."""
    from danlu.methods.lora import Lora

    def doubled(self, model):
        for module in model.modules():
            if hasattr(module, "scaling") and isinstance(module.scaling, dict):
                module.scaling = {k: 2 * v for k, v in module.scaling.items()}
        return model.merge_and_unload()

    monkeypatch.setattr(Lora, "merge", doubled)
    source = merge.open_source(str(adapter))
    with pytest.raises(DanluError, match="does not compute what the adapter model computes") as caught:
        merge.merged_model(source, merge.probe_ids(source.tokenizer, source.trained))
    assert "nothing was written" in str(caught.value) and "the merge is wrong" not in str(caught.value)
