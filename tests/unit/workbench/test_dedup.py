"""dedup: hand-made near-duplicate pairs (small edits, reordered clauses, Chinese and English)
are found; distinct rows — even on the same topic with the same wording around them — are
kept; signatures equal datasketch's MinHash value for value; the report lists the clusters."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from danlu.workbench.dedup import DedupOptions, dedup_data
from danlu.workbench.minhash import Fingerprints, MinHashParams, Signer, band_hashes, find_clusters, shingle_hashes
from tests.conftest import write_jsonl

NEAR_PAIRS = [
    ("small edit, English",
     "To reset your password, open the sign-in page, click Forgot password and enter the email address you "
     "registered with. The reset link we send expires after 30 minutes, so use it straight away.",
     "To reset your password, open the sign-in page, click Forgot password and enter the email address you "
     "registred with. The reset link we send expires after 30 minutes, so use it straight away!"),
    ("reordered clauses, English",
     "Exports are available as CSV or JSON files with every field included; you can schedule a daily export from "
     "the settings page; exported files are kept for seven days before they are deleted.",
     "You can schedule a daily export from the settings page; exports are available as CSV or JSON files with every "
     "field included; exported files are kept for seven days before they are deleted."),
    ("small edit, Chinese",
     "在登录页点击“忘记密码”，输入注册时使用的工作邮箱，我们会发送一封重置邮件，链接在三十分钟内有效，过期后需要重新申请一次新的链接。",
     "在登录页点击“忘记密码”，输入注册时使用的工作邮箱，我们会发送一封重置邮件，链接在三十分钟之内有效，过期后需要重新申请一次新的链接。"),
    ("reordered clauses, Chinese",
     "数据导出支持 CSV 和 JSON 两种格式，包含工单的全部字段；你也可以在设置页面开启每日定时导出；导出的文件会在服务器上保留七天。",
     "你也可以在设置页面开启每日定时导出；数据导出支持 CSV 和 JSON 两种格式，包含工单的全部字段；导出的文件会在服务器上保留七天。"),
    ("one word changed, mixed",
     "在 Slack 里输入 /flowdesk new 就能直接创建工单，标题和描述会自动带入，创建后频道里会收到一条带链接的确认消息。",
     "在 Slack 中输入 /flowdesk new 就能直接创建工单，标题和描述会自动带入，创建后频道里会收到一条带链接的确认消息。"),
]
EXACT_PAIRS = [
    ("case, spaces, punctuation", "How much is the Team plan?", "how much is the team plan"),
    ("full-width letters", "ＡＰＩ 密钥在哪里查看？", "API密钥在哪里查看"),
]
DISTINCT = [  # same topics and phrasing as above, different content: all must be kept
    "在登录页点击“注册”，填写公司名称和工作邮箱，我们会发送一封激活邮件，激活后即可邀请同事加入你的团队空间。",
    "To change your email address, open your profile settings, click Edit next to the address and confirm the new "
    "one. We send a confirmation link that expires after 30 minutes.",
    "How do I import my tickets from a spreadsheet every day automatically?",
    "How do I export my tickets to a spreadsheet every day automatically?",
    "如何把工单每天自动导入到表格？",
    "如何把工单每天自动导出到表格？",
    "The Team plan is 12 dollars per agent per month.",
    "The Business plan is 29 dollars per agent per month.",
]


def _rows() -> list[dict]:
    # plain rows: a shared instruction around short texts would itself make them similar (see --fields)
    rows = [{"text": t} for t in DISTINCT]
    for _, a, b in NEAR_PAIRS + EXACT_PAIRS:
        rows += [{"text": a}, {"text": b}]
    return rows


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_near_pairs_found_and_distinct_rows_kept(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", _rows())
    before = _sha(src)
    report = tmp_path / "clusters.json"
    s = dedup_data(str(src), str(tmp_path / "out.jsonl"), report=str(report))
    kept = [json.loads(line)["text"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    for text in DISTINCT:
        assert text in kept, text
    for name, a, b in NEAR_PAIRS + EXACT_PAIRS:
        assert a in kept and b not in kept, name
    assert s.rows_in == len(DISTINCT) + 2 * (len(NEAR_PAIRS) + len(EXACT_PAIRS))
    assert s.dropped == {"near": len(NEAR_PAIRS), "exact": len(EXACT_PAIRS)}
    assert _sha(src) == before, "the input was modified"
    clusters = json.loads(report.read_text())["clusters"]
    assert len(clusters) == len(NEAR_PAIRS) + len(EXACT_PAIRS)
    line = {r["text"]: f"{src}:{i}" for i, r in enumerate(_rows(), 1)}
    by_kept = {c["kept"]["where"]: c for c in clusters}
    for name, a, b in NEAR_PAIRS:
        (dropped,) = by_kept[line[a]]["dropped"]
        assert dropped["where"] == line[b], name
        assert dropped["kind"] == "near" and 0.8 <= dropped["similarity"] < 1.0, name
    for name, a, _ in EXACT_PAIRS:
        assert by_kept[line[a]]["dropped"][0]["kind"] == "exact", name


def test_threshold_and_exact_only(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", _rows())
    strict = dedup_data(str(src), str(tmp_path / "a.jsonl"), DedupOptions(threshold=0.99))
    assert strict.dropped.get("near", 0) < len(NEAR_PAIRS)
    exact = dedup_data(str(src), str(tmp_path / "b.jsonl"), DedupOptions(near=False))
    assert exact.dropped == {"exact": len(EXACT_PAIRS)}


def test_fields_restrict_the_comparison(tmp_path):
    rows = [{"instruction": "Same question?", "output": "Answer one, about billing."},
            {"instruction": "Same question?", "output": "A completely different answer about exports and CSV."}]
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    assert dedup_data(str(src), str(tmp_path / "a.jsonl")).rows_out == 2
    s = dedup_data(str(src), str(tmp_path / "b.jsonl"), DedupOptions(fields=("instruction",)))
    assert s.rows_out == 1 and s.dropped == {"exact": 1}


@pytest.mark.parametrize("texts", [["hello world, this is a test", "你好世界", "ab", "", "x" * 500]])
def test_signatures_equal_datasketch(texts):
    from datasketch import MinHash

    params = MinHashParams(num_perm=64, ngram=3, seed=7)
    sigs = Signer(params).sign(texts)
    hashes, counts = shingle_hashes(texts, params.ngram)
    offset = 0
    for text, n, sig in zip(texts, counts, sigs):
        ref = MinHash(num_perm=64, seed=7, hashfunc=lambda x: x)  # shingle hashes are already integers
        ref.update_batch([int(h) for h in hashes[offset:offset + n]])
        offset += n
        assert np.array_equal(ref.hashvalues, sig), text


def test_clusters_are_connected_components():
    # a chain: each row a few edits from the one before, the ends far apart; all one cluster
    rng = np.random.default_rng(0)
    base = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 300))
    chain = [base]
    for k in range(1, 6):
        s = list(chain[-1])
        s[60 * k - 30:60 * k - 27] = "###"
        chain.append("".join(s))
    texts = chain + ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 300))]
    params = MinHashParams(threshold=0.9, ngram=3)
    sigs = Signer(params).sign(texts)
    assert (sigs[0] == sigs[5]).mean() < 0.9  # the ends alone would not be joined
    fp = Fingerprints(np.arange(len(texts), dtype=np.uint64), band_hashes(sigs, *params.bands()), sigs, params)
    root = find_clusters(fp)
    assert root.tolist() == [0, 0, 0, 0, 0, 0, 6]
