"""Continued pretraining: documents concatenated (each ending in EOS) and cut into full blocks,
every token a label."""

from __future__ import annotations

import pytest

from danlu.stages.pretrain import pack_blocks
from tests.conftest import write_jsonl


@pytest.mark.parametrize("docs, size, keep, expected", [
    ([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4, True, [[1, 2, 3, 4], [5, 6, 7, 8]]),  # a 1-token tail is dropped
    ([[1, 2, 3], [4, 5], [6, 7, 8]], 3, True, [[1, 2, 3], [4, 5, 6], [7, 8]]),
    ([[1, 2, 3], [4, 5], [6, 7, 8]], 3, False, [[1, 2, 3], [4, 5, 6]]),
    ([[1, 2]], 4, True, [[1, 2]]),
    ([], 4, True, []),
])
def test_pack_blocks(docs, size, keep, expected):
    assert pack_blocks(docs, size, keep) == expected


def test_pretrain_dataset_is_the_token_stream(tmp_path):
    from danlu.config.load import load_config_dict
    from danlu.train.runner import build

    texts = ["FlowDesk keeps every ticket in one place.", "流云工单支持 Slack 和企业微信。", "Short."]
    data = write_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in texts])
    cfg = load_config_dict({"model": {"name_or_path": "builtin:tiny"}, "data": {"train": str(data)},
                            "method": {"name": "full"}, "stage": "pretrain", "pretrain": {"block_size": 8},
                            "output_dir": str(tmp_path / "run")})
    (tmp_path / "run").mkdir()
    ctx, train, _ = build(cfg, run_dir=tmp_path / "run")
    tok = ctx.tokenizer
    stream = [i for t in texts for i in tok(t)["input_ids"] + [tok.eos_token_id]]
    blocks = [train[i] for i in range(len(train))]
    assert all(len(b["input_ids"]) == 8 for b in blocks[:-1]) and len(blocks[-1]["input_ids"]) <= 8
    assert [i for b in blocks for i in b["input_ids"]] == stream
    assert all(b["labels"] == b["input_ids"] for b in blocks)  # loss on every token
