"""Varlen packing on flash-attention (CUDA): per-sample losses and gradients of one packed
padding-free row equal those of each sample run alone.

Tolerance: the model runs in bf16 (flash-attention computes in 16 bits only), so both sides
round every matmul output to bf16 (relative step 2^-8 ≈ 0.4%); the packed and the one-by-one
runs use different matmul shapes (N vs L rows), hence different kernels and rounding, not
different maths. Per-sample losses may then differ by a few 1e-3 and gradient vectors by ~1%
of their norm. The test also runs a control — the same row with no sample boundaries, every
token attending across samples — and requires its error to be at least 5× the tolerance, so
the tolerance is shown to detect the bug it guards against."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from danlu.data.collate import IGNORE, PaddingCollator, VarlenCollator

pytestmark = pytest.mark.gpu
LOSS_TOL = 2e-2  # absolute, on per-sample mean losses of ~6
GRAD_TOL = 3e-2  # relative L2 error of the whole gradient vector


def _features(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        L = int(torch.randint(40, 200, (1,), generator=g))
        ids = torch.randint(10, 500, (L,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": list(ids) if i == 1 else [IGNORE] * (L // 3) + ids[L // 3:]})
    return out


def _model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    # a wide init makes attention peaky and outputs depend strongly on context (a control that can fail)
    cfg = Qwen2Config(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      initializer_range=0.2)
    model = Qwen2ForCausalLM(cfg).to("cuda", torch.bfloat16)
    model.set_attn_implementation("flash_attention_2")
    return model


def _per_sample_losses(model, batch, bounds):
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
    shift = batch.pop("shift_labels")
    batch.pop("labels")
    logits = model(**batch, use_cache=False).logits.float()[0]  # (N, V)
    tok = F.cross_entropy(logits, shift[0], ignore_index=IGNORE, reduction="none")  # (N,)
    n = shift[0].ne(IGNORE)
    return torch.stack([tok[s:e].sum() / n[s:e].sum() for s, e in zip(bounds[:-1], bounds[1:])])


def _grad(model):
    return torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])


def test_flash_varlen_row_equals_samples_alone():
    pytest.importorskip("flash_attn")
    feats = _features()
    model = _model()
    ref_losses = []
    for f in feats:
        one = PaddingCollator(0)([f])
        one.pop("attention_mask")  # one sample, no padding: plain causal flash-attention
        loss = _per_sample_losses(model, one, [0, len(f["input_ids"])])[0]
        loss.backward()
        ref_losses.append(loss.detach())
    ref_grad, ref_losses = _grad(model), torch.stack(ref_losses)
    model.zero_grad()

    batch = VarlenCollator()([dict(f) for f in feats])
    bounds = batch["cu_seq_lens_q"].tolist()
    losses = _per_sample_losses(model, dict(batch), bounds)
    losses.sum().backward()
    assert (losses - ref_losses).abs().max().item() < LOSS_TOL
    assert ((_grad(model) - ref_grad).norm() / ref_grad.norm()).item() < GRAD_TOL

    control = {k: v for k, v in batch.items() if not k.startswith(("cu_seq", "max_length"))}
    control["position_ids"] = torch.arange(control["input_ids"].shape[1])[None]  # one long sequence
    with torch.no_grad():
        leaked = _per_sample_losses(model, control, bounds)
    assert (leaked - ref_losses).abs().max().item() > 5 * LOSS_TOL  # attention across samples is caught


def test_danlu_train_packs_varlen_under_flash_attention(tmp_path, qa_file):
    pytest.importorskip("flash_attn")
    import json

    from tests.conftest import run_cli, tiny_config

    cfg = tiny_config(tmp_path, qa_file, train={"max_steps": 4, "save_steps": None})
    proc = run_cli("train", str(cfg))
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["levers"]["attn_implementation"] == "flash_attention_2"  # auto picked it
    assert info["levers"]["packing"].startswith("varlen")
