"""VarlenCollator: one padding-free row with flash-attention's sequence boundaries."""

from __future__ import annotations

import torch

from danlu.data.collate import IGNORE, PackingCollator, VarlenCollator

FEATS = [
    {"input_ids": [11, 12, 13, 14], "labels": [IGNORE, IGNORE, 13, 14]},
    {"input_ids": [21, 22], "labels": [21, 22]},
    {"input_ids": [31, 32, 33], "labels": [IGNORE, 32, 33]},
]


def test_one_row_of_all_tokens_no_mask_no_padding():
    b = VarlenCollator()(FEATS)
    assert "attention_mask" not in b  # flash-attention reads the boundaries, not a mask
    assert b["input_ids"].tolist() == [[11, 12, 13, 14, 21, 22, 31, 32, 33]]
    assert b["labels"].tolist() == [[IGNORE, IGNORE, 13, 14, 21, 22, IGNORE, 32, 33]]


def test_shift_labels_end_each_sample_with_ignore():
    b = VarlenCollator()(FEATS)
    # position t holds the label of t+1 within its own sample; a sample's last token predicts nothing
    assert b["shift_labels"].tolist() == [[IGNORE, 13, 14, IGNORE, 22, IGNORE, 32, 33, IGNORE]]


def test_positions_restart_and_boundaries_are_cumulative():
    b = VarlenCollator()(FEATS)
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 0, 1, 2]]
    assert b["cu_seq_lens_q"].tolist() == b["cu_seq_lens_k"].tolist() == [0, 4, 6, 9]
    assert b["cu_seq_lens_q"].dtype == torch.int32  # what flash_attn_varlen_func takes
    assert b["max_length_q"] == b["max_length_k"] == 4
    assert isinstance(b["max_length_q"], int)  # a Python int: no device sync in every layer


def test_same_tokens_and_loss_tokens_as_mask_packing():
    varlen, packed = VarlenCollator()(FEATS), PackingCollator(0, max_length=16)(FEATS)
    assert varlen["input_ids"].numel() == len([t for f in FEATS for t in f["input_ids"]])
    assert int(varlen["shift_labels"].ne(IGNORE).sum()) == int(packed["shift_labels"].ne(IGNORE).sum())
    assert sorted(varlen["input_ids"][0].tolist()) == sorted(packed["input_ids"][packed["labels"].ne(IGNORE) |
                                                                 packed["position_ids"].gt(0) |
                                                                 packed["input_ids"].ne(0)].tolist())


def test_a_single_sample_is_one_segment():
    b = VarlenCollator()([FEATS[0]])
    assert b["cu_seq_lens_q"].tolist() == [0, 4] and b["position_ids"].tolist() == [[0, 1, 2, 3]]
