"""validate lists every problem of a dirty file with its file:line; inspect reports format, rows,
fields, roles, token lengths equal to the tokenizer's own count of the rendered template, a
histogram that adds up, a PNG, and the problems per kind."""

from __future__ import annotations

from danlu.workbench.inspect_rows import inspect_data
from danlu.workbench.validate import validate_data
from tests.conftest import write_jsonl

DIRTY = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    '{"messages": [oops',  # 2 invalid JSON
    {"messages": [{"role": "assistant", "content": "I speak first"}, {"role": "user", "content": "?"}]},  # 3 order
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]},  # 4 empty answer
    {"instruction": "an alpaca row in a messages file", "output": "x"},  # 5 other format
    '[1, 2]',  # 6 not an object
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "怎么导出？"},
                  {"role": "assistant", "content": "在设置里导出。"}]},
]


def test_validate_lists_every_problem(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", DIRTY)
    seen = []
    s = validate_data(str(src), str(tmp_path / "problems.jsonl"), on_problem=seen.append)
    assert [p.where for p in seen] == [f"{src}:{n}" for n in (2, 3, 4, 5, 6)]
    reasons = [p.reason for p in seen]
    assert "invalid JSON" in reasons[0] and "wrong role order" in reasons[1]
    assert "empty assistant turn" in reasons[2]
    assert "looks like alpaca, the file is messages" in reasons[3]
    assert "expected a JSON object" in reasons[4]
    assert s.rows_in == 7 and s.rows_out == 2 and s.counts["problems"] == 5 and s.counts["format"] == "messages"
    assert len((tmp_path / "problems.jsonl").read_text().splitlines()) == 5


def test_inspect_report(tmp_path, tiny_tokenizer):
    src = write_jsonl(tmp_path / "d.jsonl", DIRTY)
    plot = tmp_path / "lengths.png"
    r = inspect_data(str(src), plot=str(plot), examples=1)
    assert r.format == "messages" and r.rows == 7 and r.good_rows == 2
    assert r.fields == {"messages": 4, "instruction": 1, "output": 1}
    assert r.roles == {"user": 2, "assistant": 2, "system": 1}
    assert sum(c for _, _, c in r.histogram) == 2 == r.tokens["count"]
    rendered = tiny_tokenizer.apply_chat_template(DIRTY[0]["messages"], tokenize=False)
    assert r.tokens["min"] == len(tiny_tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r.examples == ["user: Hi\nassistant: Hello!"]
    assert r.problems["invalid JSON"]["count"] == 1 and r.problems["invalid JSON"]["first"] == f"{src}:2"
    assert set(r.problems) == {"invalid JSON", "wrong role order", "empty assistant turn", "missing field", "malformed row"}
    sampled = inspect_data(str(src), token_sample=1)
    assert sampled.tokens["count"] == 1 and sampled.chars["count"] == 2  # characters still of every row
