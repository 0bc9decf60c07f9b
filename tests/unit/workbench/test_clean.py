"""clean: each text rule on its own (a table of before → after, including what must survive:
Chinese punctuation, code indentation, `a < b`, placeholders, HTML inside markdown code), then
whole rows: drops per rule, counts per rule, and structure (roles, tool calls) left alone."""

from __future__ import annotations

import json

import pytest

from danlu.workbench.clean import CleanOptions, clean_data, nfkc, strip_control, strip_html, tidy_whitespace
from tests.conftest import write_jsonl


@pytest.mark.parametrize("rule, before, after", [
    (nfkc, "ＡＢＣ１２３，ｶﾀｶﾅ", "ABC123，カタカナ"),
    (nfkc, "你好，世界！（测试）：完成；对吗？", "你好，世界！（测试）：完成；对吗？"),  # Chinese punctuation kept
    (nfkc, "ﬁle ① ㎏", "file 1 kg"),
    (lambda t: nfkc(t, fold_cjk_punct=True), "你好，世界！", "你好,世界!"),
    (strip_control, "a\x00b\x07c\r\nd\re\u200bf\ufeff", "abc\nd\nef"),
    (strip_control, "tab\tand\nnewline", "tab\tand\nnewline"),
    (tidy_whitespace, "  line one   \n\n\n\n    indented code\t\n", "line one\n\n    indented code"),
    (tidy_whitespace, "a\u00a0b\u3000c", "a b\u3000c"),
    (strip_html, "<p>Hello &amp; <b>welcome</b></p><br>Next line", "Hello & welcome\n\nNext line"),
    (strip_html, "<div class='x'>Price: &yen;12</div><script>alert(1)</script>", "Price: ¥12\n"),
    (strip_html, "if a < b and b > c: use List<String> and <EMAIL>", "if a < b and b > c: use List<String> and <EMAIL>"),
    (strip_html, "Use `<br>` for a line break:\n```html\n<p>hi</p>\n```\n<p>done</p>",
     "Use `<br>` for a line break:\n```html\n<p>hi</p>\n```\ndone\n"),
    (strip_html, "AT&T and R&D", "AT&T and R&D"),
])
def test_text_rules(rule, before, after):
    assert rule(before) == after


def test_rows_dropped_and_counted_per_rule(tmp_path):
    rows = [
        {"instruction": "Ｈｏｗ much?", "input": "", "output": "It is <b>12</b> dollars.   "},  # nfkc, html, whitespace
        {"instruction": "Fine row", "input": "", "output": "Nothing to change here."},
        {"instruction": "Empty answer", "input": "", "output": "<p>   </p>"},  # empty after cleaning
        {"instruction": "hi", "input": "", "output": "ok"},  # too short
        {"instruction": "Long", "input": "", "output": "word " * 100},  # too long
        {"instruction": "只有中文的问题", "input": "", "output": "这是一个中文回答，提到了 Slack 和 API。"},
        {"instruction": "Это русский", "input": "", "output": "Да, это русский текст."},  # language
        {"instruction": "Bell", "input": "", "output": "ding\x07 dong"},  # control
    ]
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    opts = CleanOptions(min_chars=10, max_chars=200, languages=("en", "zh"))
    s = clean_data(str(src), str(tmp_path / "out.jsonl"), opts)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert s.dropped == {"empty": 1, "too_short": 1, "too_long": 1, "language": 1}
    assert s.changed == {"nfkc": 1, "html": 1, "whitespace": 1, "control": 1}
    assert s.rows_in == 8 and s.rows_out == len(out) == 4
    assert out[0] == {"instruction": "How much?", "input": "", "output": "It is 12 dollars."}
    assert out[2]["output"] == "这是一个中文回答，提到了 Slack 和 API。"
    assert out[3]["output"] == "ding dong"


def test_structure_left_alone(tmp_path):
    row = {"conversations": [
        {"from": "human", "value": " What is the weather in Paris? "},
        {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Paris  "}}'},
        {"from": "observation", "value": '{"temp": "<b>21</b>"}'},
        {"from": "gpt", "value": "It is <b>21</b> degrees."}],
        "tools": '[{"name": "weather", "description": "<i>Weather</i>  "}]'}
    src = write_jsonl(tmp_path / "d.jsonl", [row])
    clean_data(str(src), str(tmp_path / "out.jsonl"))
    out = json.loads((tmp_path / "out.jsonl").read_text())
    assert out["conversations"][0]["value"] == "What is the weather in Paris?"
    assert out["conversations"][1:3] == row["conversations"][1:3]  # tool call and result untouched
    assert out["conversations"][3]["value"] == "It is 21 degrees."
    assert out["tools"] == row["tools"]
    assert [t["from"] for t in out["conversations"]] == ["human", "function_call", "observation", "gpt"]


def test_rules_can_be_turned_off(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", [{"text": "<b>ＡＢＣ</b>  "}])
    clean_data(str(src), str(tmp_path / "out.jsonl"), CleanOptions(nfkc=False, html=False, whitespace=False))
    assert json.loads((tmp_path / "out.jsonl").read_text())["text"] == "<b>ＡＢＣ</b>  "
