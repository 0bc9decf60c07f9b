"""decontam: training rows that share a 13-token n-gram with an evaluation row are dropped, in
English (words) and Chinese (characters); short evaluation questions are matched whole; rows
that only share common short phrases are kept; the window hash equals a direct computation."""

from __future__ import annotations

import json

import numpy as np

from danlu.workbench.decontam import DecontamOptions, decontam_data, token_ids, window_hashes
from tests.conftest import write_jsonl

EVAL = [
    {"instruction": "What is the price of the Business plan per user?", "input": "",
     "output": "The Business plan is $29 per agent per month and includes SSO, the audit log and SLA policies."},
    {"instruction": "密码忘了，怎么找回？", "input": "",
     "output": "在登录页点“忘记密码”并输入邮箱，收到的重置链接需要在三十分钟内打开，否则需要重新申请。"},
]
TRAIN = [
    # leaked: the eval answer inside a longer answer (English, 13+ shared words)
    {"instruction": "Tell me about pricing.", "input": "",
     "output": "Sure. The Business plan is $29 per agent per month and includes SSO, the audit log and more."},
    # leaked: 13+ shared Chinese characters
    {"instruction": "重置链接多久有效？", "input": "", "output": "收到的重置链接需要在三十分钟内打开，过期请重新申请。"},
    # leaked: the short eval question verbatim (matched whole: 9 tokens < 13)
    {"instruction": "密码忘了，怎么找回？", "input": "", "output": "请联系管理员。"},
    # clean: shares only short common phrases
    {"instruction": "What is the price of the Team plan?", "input": "", "output": "The Team plan is $12 per agent."},
    {"instruction": "怎么导出数据？", "input": "", "output": "在设置里选择导出，支持 CSV 和 JSON。"},
]


def test_contaminated_rows_dropped(tmp_path):
    ev = write_jsonl(tmp_path / "eval.jsonl", EVAL)
    tr = write_jsonl(tmp_path / "train.jsonl", TRAIN)
    report = tmp_path / "report.json"
    s = decontam_data(str(tr), [str(ev)], str(tmp_path / "out.jsonl"), report=str(report))
    kept = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert kept == TRAIN[3:]
    assert s.dropped == {"contaminated": 3}
    rows = json.loads(report.read_text())["rows"]
    assert [r["where"] for r in rows] == [f"{tr}:1", f"{tr}:2", f"{tr}:3"]
    assert [r["eval"] for r in rows] == [f"{ev}:1", f"{ev}:2", f"{ev}:2"]
    assert "business plan is 29 per agent" in rows[0]["ngram"]


def test_short_eval_fields_need_min_ngram(tmp_path):
    ev = write_jsonl(tmp_path / "eval.jsonl", EVAL)
    tr = write_jsonl(tmp_path / "train.jsonl", TRAIN[2:3])
    s = decontam_data(str(tr), [str(ev)], str(tmp_path / "out.jsonl"), DecontamOptions(min_ngram=0))
    assert s.rows_out == 1


def test_window_hash_matches_direct_polynomial():
    ids = token_ids(["a", "b", "c", "d", "e", "f"])
    P = 0x100000001B3
    for length in (1, 3, 6):
        direct = [sum(int(ids[i + j]) * pow(P, length - 1 - j, 1 << 64) for j in range(length)) % (1 << 64)
                  for i in range(len(ids) - length + 1)]
        assert window_hashes(ids, length).tolist() == direct
    assert len(window_hashes(ids, 7)) == 0 and window_hashes(ids, 2).dtype == np.uint64
