"""Activation offload on CUDA: the same loss and gradients with and without it, and less GPU
memory held by saved activations.

Offload copies saved tensors to pinned host memory and back, bit for bit, and the maths is the
same ops in the same order. The model uses eager attention (plain matmuls): the fused SDPA
backward kernels accumulate with atomic adds, whose order varies run to run; with eager the
two runs are the same deterministic kernels, and losses and gradients agree to 1e-6 relative
(in practice bitwise). A small vocabulary keeps the logits (saved outside the checkpointed
blocks, not offloaded there) small beside the activations offload is meant to move."""

from __future__ import annotations

import pytest
import torch

from danlu.data.collate import PaddingCollator
from danlu.train.loss import causal_lm_loss

pytestmark = pytest.mark.gpu


def _model(checkpointing: bool, offload: bool):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=256, hidden_size=256, intermediate_size=704, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048)
    model = Qwen2ForCausalLM(cfg).cuda().train()
    model.set_attn_implementation("eager")
    if checkpointing:  # transformers' own switch, as TrainingArguments drive it
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False},
                                              offload=offload)
    return model


def _step(model, offload_forward: bool):
    g = torch.Generator().manual_seed(1)
    feats = [{"input_ids": ids, "labels": ids} for ids in torch.randint(5, 250, (4, 1024), generator=g).tolist()]
    batch = {k: v.cuda() for k, v in PaddingCollator(0)(feats).items()}
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    ctx = torch.autograd.graph.save_on_cpu(pin_memory=True) if offload_forward else torch.enable_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16), ctx:
        loss, _, _ = causal_lm_loss(model, batch, keep_logits=True)
    held = torch.cuda.memory_allocated() - start  # saved activations (+ the loss) after the forward
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    return loss.detach(), grads, held


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
def test_offload_keeps_loss_and_grads_and_frees_gpu_memory(checkpointing):
    loss_a, grad_a, held_a = _step(_model(checkpointing, offload=False), offload_forward=False)
    loss_b, grad_b, held_b = _step(_model(checkpointing, offload=checkpointing), offload_forward=not checkpointing)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad_b, grad_a, rtol=1e-6, atol=1e-9)
    assert held_b < 0.5 * held_a, (held_a, held_b)  # the saved activations left the GPU


def test_danlu_train_with_offload_records_it(tmp_path, qa_file):
    import json

    from tests.conftest import run_cli, tiny_config

    cfg = tiny_config(tmp_path, qa_file, train={"max_steps": 3, "save_steps": None, "gradient_checkpointing": True,
                                                "offload_activations": True})
    proc = run_cli("train", str(cfg))
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["levers"]["offload_activations"] == "checkpointed block inputs"
