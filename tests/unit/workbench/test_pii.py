"""scrub: a synthetic corpus of personal data in Chinese and English sentences is fully scrubbed
(every planted item gone, the right placeholder in its place, counted per type), while prices,
dates, times, quantities, order numbers, version numbers and numbers that fail a checksum stay
exactly as they were."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from danlu.workbench.pii import bank_card_valid, id_card_valid, luhn_valid, scrub_data, scrub_text
from tests.conftest import write_jsonl

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def make_id(rng: random.Random) -> str:
    body = f"{rng.choice(['110105', '310104', '440305', '510107'])}{rng.randint(1950, 2005)}" \
           f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randrange(1000):03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, ID_WEIGHTS)) % 11]


def make_card(rng: random.Random, prefix: str, n: int, group: str = "") -> str:
    digits = [int(c) for c in prefix] + [rng.randrange(10) for _ in range(n - len(prefix) - 1)]
    total = sum(d if i % 2 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    number = "".join(map(str, digits)) + str((10 - total % 10) % 10)
    return group.join(number[i:i + 4] for i in range(0, n, 4)) if group else number


def corpus(seed: int = 0) -> list[tuple[str, str, str]]:
    """(sentence, planted item, placeholder) — several per type, in both languages."""
    rng = random.Random(seed)
    items = []
    for _ in range(6):
        mobile = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
        items += [
            ("请联系 {} 获取发票。", f"zhang.san{rng.randrange(99)}@example.com.cn", "EMAIL"),
            ("Send it to {} before Friday.", f"J.Doe+billing{rng.randrange(99)}@mail.co.uk", "EMAIL"),
            ("邮件发到{}就行", f"{rng.randrange(10**8, 10**9)}@qq.com", "EMAIL"),
            ("手机{}，随时打。", mobile, "PHONE"),
            ("call me on {} tomorrow", f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}", "PHONE"),
            ("电话：{}", f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}", "PHONE"),
            ("办公室座机 {} 转总机", f"0{rng.choice(['10', '21', '755', '571'])}-{rng.randint(2, 9)}{rng.randrange(10**6, 10**7)}", "PHONE"),
            ("London office: {}.", f"+44 20 {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}", "PHONE"),
            ("US support line {} (9am-5pm)", f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randrange(1000, 9999)}", "PHONE"),
            ("身份证号{}，请核对。", make_id(rng), "ID_CARD"),
            ("ID {} on file", make_id(rng).lower(), "ID_CARD"),
            ("卡号 {} 已绑定", make_card(rng, "62", 16, " "), "BANK_CARD"),
            ("银联卡{}", make_card(rng, "622202", 19), "BANK_CARD"),
            ("Visa {} exp 09/27", make_card(rng, "4", 16, "-"), "BANK_CARD"),
            ("Mastercard {}.", make_card(rng, "5" + rng.choice("12345"), 16), "BANK_CARD"),
            ("Amex {}", make_card(rng, "37", 15), "BANK_CARD"),
            ("服务器地址 {}，端口 22", f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", "IP"),
            ("client IP was {}.", f"2001:db8:{rng.randrange(1, 0xffff):x}::{rng.randrange(1, 0xffff):x}", "IP"),
            ("登录日志来自{}", f"192.168.{rng.randrange(256)}.{rng.randrange(256)}", "IP"),
        ]
    items += [
        ("连接串 postgres://{}@db.internal:5432/app", "admin:S3cr3t!pw", "SECRET"),
        ("webhook https://hooks.example.com/x?token={}&channel=ops", "abcDEF123456", "SECRET"),
        ("签名链接 https://cdn.example.com/f.pdf?X-Amz-Signature={}", "9f86d081884c7d659a2feaa0c55ad015", "SECRET"),
        ("export OPENAI_API_KEY={}", "sk-proj-" + "Ab3d" * 8, "SECRET"),
        ("AWS key {} in the config", "AKIA" + "ABCDEFGHIJKLMNOP", "SECRET"),
        ("Authorization: Bearer {}", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", "SECRET"),
    ]
    return [(template.format(item), item, kind) for template, item, kind in items]


ORDINARY = [
    "价格 ¥1,299.00，优惠后 ¥999，运费 12.5 元。",
    "The Team plan is $12.99 per agent per month, or $129 per year.",
    "日期 2024-01-15，2024年1月15日，2024/01/15，15.01.2024，Jan 15, 2024。",
    "会议 12:30:45 开始，14:00 结束，时区 UTC+8。",
    "订单号 202401150001，数量 3 件，共 1,000,000 次调用。",
    "Order #4000123412341235 shipped; tracking 1Z999AA10123456784.",  # Visa-like, Luhn fails
    "版本 v1.2.3.4，Python 3.11.7，numpy 2.4.6。",
    "a[::2] and x[1::3] slice lists; std::vector is C++.",
    "Batch 1024 × 8 steps = 8192 samples; loss 0.0123; lr 1e-4; 99.9% uptime.",
    "号码 11010519491231002 只有 17 位，110105194912310021 校验位不对。",
    "Call extension 4521 or room 1208; PIN length 6; ISBN 978-7-111-12345-6.",
    "时间戳 1700000000 和 1700000000000 不是手机号。",
    "Coordinates 39.9042, 116.4074; ratio 16:9; score 3-2.",
]


def test_checksums():
    rng = random.Random(1)
    for _ in range(50):
        assert id_card_valid(make_id(rng))
        assert bank_card_valid(make_card(rng, "62", 16))
    assert id_card_valid("11010519491231002X") and not id_card_valid("110105194912310021")
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert not bank_card_valid("1234567812345670")  # Luhn passes, no card network starts with 1
    assert not luhn_valid("4000123412341235")  # the order number in ORDINARY


def test_corpus_fully_scrubbed_with_typed_placeholders():
    rows = corpus()
    total: Counter = Counter()
    for sentence, item, kind in rows:
        counts: Counter = Counter()
        out = scrub_text(sentence, counts)
        assert item not in out and item.lower() not in out, (sentence, out)
        assert f"<{kind}>" in out, (sentence, out)
        assert counts == Counter({kind: 1}), (sentence, out, counts)
        total[kind] += 1
    assert set(total) == {"EMAIL", "PHONE", "ID_CARD", "BANK_CARD", "IP", "SECRET"}


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_numbers_untouched(text):
    counts: Counter = Counter()
    assert scrub_text(text, counts) == text
    assert not counts


def test_scrub_file_counts_per_type_and_keeps_structure(tmp_path):
    rows = corpus(seed=2)
    data = [{"messages": [{"role": "user", "content": s}, {"role": "assistant", "content": o}]}
            for (s, _, _), o in zip(rows, ORDINARY * 20)]
    src = write_jsonl(tmp_path / "d.jsonl", data)
    s = scrub_data(str(src), str(tmp_path / "out.jsonl"))
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == len(data) == s.rows_out
    expected = Counter(kind for _, _, kind in rows)
    assert s.counts == {f"replaced: {k.lower()}": n for k, n in expected.items()}
    for before, after in zip(data, out):
        assert [m["role"] for m in after["messages"]] == ["user", "assistant"]
        assert after["messages"][1]["content"] == before["messages"][1]["content"]  # ordinary text kept


def test_only_selected_types(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", [{"text": "mail a@b.com or call 13800138000"}])
    scrub_data(str(src), str(tmp_path / "out.jsonl"), kinds=("email",))
    assert json.loads((tmp_path / "out.jsonl").read_text())["text"] == "mail <EMAIL> or call 13800138000"
