"""QLoRA on CUDA with bitsandbytes: the base's block linears are Linear4bit holding 4 bits per
weight on the GPU, a few steps lower the loss, and the saved adapter, reloaded onto a freshly
quantised base, gives the trained model's logits."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import tiny_config

pytestmark = pytest.mark.gpu


def _logits(model, ids):
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        return model(input_ids=ids).logits.float()


def test_qlora_trains_on_cuda_and_the_adapter_reloads(tmp_path, qa_file):
    pytest.importorskip("bitsandbytes")
    from bitsandbytes.nn import Linear4bit
    from transformers import TrainerCallback

    from danlu.config.load import load_config
    from danlu.infer.load import load_for_inference
    from danlu.train.runner import run_training

    seen = {}

    class Grab(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            seen["model"] = model

    cfg = tiny_config(tmp_path, qa_file, method={"name": "qlora", "r": 8},
                      train={"max_steps": 12, "save_steps": None, "learning_rate": 5e-3, "batch_size": 8})
    result = run_training(load_config(cfg), callbacks=[Grab()])
    model = seen["model"]

    quantised = [m for m in model.modules() if isinstance(m, Linear4bit)]
    assert len(quantised) == 2 * 7  # builtin:tiny: 2 blocks × (q, k, v, o, gate, up, down)
    for m in quantised:
        w = m.weight
        assert type(w).__name__ == "Params4bit" and w.quant_state is not None and w.device.type == "cuda"
        assert w.numel() * w.element_size() * 2 == m.in_features * m.out_features  # 4 bits per weight

    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    losses = [r["loss"] for r in rows if "loss" in r and "train_loss" not in r]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses

    loaded = load_for_inference(str(result.artefact), device="cuda")
    ids = loaded.tokenizer("What is FlowDesk? 流云工单是什么？", return_tensors="pt")["input_ids"].cuda()
    model.eval()
    # prepare_model_for_kbit_training upcast the frozen bf16 norms and embeddings to fp32 for
    # training; cast them back (exact: they never changed) so both models run the same dtypes
    for name, p in model.named_parameters():
        if p.dtype == torch.float32 and "lora_" not in name:
            p.data = p.data.to(torch.bfloat16)
    torch.testing.assert_close(_logits(loaded.model, ids), _logits(model, ids), rtol=1e-3, atol=1e-3)
