"""RELIABILITY case 12: per-sample losses and gradients of a packed batch equal those of the
same samples run one by one (no attention across boundaries, positions restart per sample)."""

from __future__ import annotations

import torch

from danlu.data.collate import PackingCollator, PaddingCollator, first_fit
from danlu.train.loss import causal_lm_loss


def _features(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = []
    for i in range(n):
        L = int(torch.randint(5, 30, (1,), generator=g))
        ids = torch.randint(10, 500, (L,), generator=g).tolist()
        cut = L // 2
        labels = [-100] * cut + ids[cut:]
        if i == 1:  # a sample whose first token carries a label (text/train_on_prompt)
            labels = list(ids)
        feats.append({"input_ids": ids, "labels": labels})
    return feats


def _model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return Qwen2ForCausalLM(cfg).float()


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_first_fit_respects_capacity():
    bins = first_fit([5, 9, 3, 7, 2, 12], 12)
    assert sorted(i for b in bins for i in b) == list(range(6))
    assert all(sum([5, 9, 3, 7, 2, 12][i] for i in b) <= 12 for b in bins)


def test_packed_equals_unpacked_loss_and_grads():
    feats = _features(6)
    model = _model()
    total = sum(sum(1 for x in f["labels"][1:] if x != -100) for f in feats)
    # reference: each sample alone (no padding), summed into one normalised loss
    model.zero_grad()
    ref_losses = []
    for f in feats:
        batch = PaddingCollator(0)([f])
        loss, n, _ = causal_lm_loss(model, batch, num_items_in_batch=total)
        loss.backward()
        ref_losses.append(loss.item())
    ref_grad = _grads(model).clone()
    model.zero_grad()
    packed = PackingCollator(0, max_length=64)([dict(f) for f in feats])
    assert packed["input_ids"].shape[0] < len(feats)  # really packed
    loss, n, _ = causal_lm_loss(model, packed, num_items_in_batch=total)
    loss.backward()
    assert int(n) == total
    assert abs(loss.item() - sum(ref_losses)) < 1e-5
    torch.testing.assert_close(_grads(model), ref_grad, rtol=1e-4, atol=1e-6)


def test_padded_equals_unpacked():
    feats = _features(4, seed=1)
    model = _model()
    total = sum(sum(1 for x in f["labels"][1:] if x != -100) for f in feats)
    single = sum(causal_lm_loss(model, PaddingCollator(0)([f]), total)[0].item() for f in feats)
    padded = causal_lm_loss(model, PaddingCollator(0)(feats), total)[0].item()
    assert abs(single - padded) < 1e-5


def test_no_cross_sample_target():
    """The last token of a sample is never trained to predict the next sample's first token."""
    feats = [{"input_ids": [11, 12, 13], "labels": [11, 12, 13]}, {"input_ids": [21, 22], "labels": [21, 22]},
             {"input_ids": [31], "labels": [31]}]
    packed = PackingCollator(0, max_length=16)(feats)
    rows = packed["shift_labels"].tolist()
    assert [12, 13, -100] in rows and [22, -100, -100] in rows  # 21→22, then no target into sample [31]


def test_rows_are_as_wide_as_the_longest_sample():
    feats = [{"input_ids": [1] * n, "labels": [1] * n} for n in (10, 7, 3, 2)]
    packed = PackingCollator(0, max_length=512)(feats)
    assert packed["input_ids"].shape == (3, 10)  # rows [10], [7 + 3], [2]: 20 + 2 real of 30 slots (padding: 40)
