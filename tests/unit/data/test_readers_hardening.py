"""Hostile files answered per row (RELIABILITY.md case 15 and issue 19 items 3, 7, 8): a byte that
is not UTF-8 costs exactly its row, named with the right file:line; BOM, CRLF and UTF-16 read;
binary, mislabelled and absurdly nested files give a message, never a traceback; numbers where
text belongs and messages without content are bad rows, counted and named."""

from __future__ import annotations

import json

import pytest

from danlu.data.dataset import iter_samples
from danlu.data.readers import read_rows
from danlu.data.report import DataReport
from danlu.workbench.validate import validate_data
from danlu.errors import DataError

ROW = {"instruction": "q", "input": "", "output": "a"}


def _alpaca(n: int) -> list[bytes]:
    return [json.dumps({"instruction": f"q{i}", "input": "", "output": f"a{i}"}).encode() for i in range(n)]


def _samples(path, **kw):
    report = DataReport()
    return list(iter_samples(str(path), report=report, **kw)), report


def test_one_latin1_byte_costs_exactly_its_line(tmp_path):
    rows = _alpaca(2000)
    rows[999] = rows[999].replace(b"q999", b"caf\xe9")  # latin-1 é on line 1000
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    samples, report = _samples(path)
    assert len(samples) == 1999 and report.rows_read == 2000
    assert report.dropped["not UTF-8"]["rows"][0]["where"] == f"{path}:1000"
    assert samples[999].where == f"{path}:1001" and samples[-1].messages[-1]["content"] == "a1999"
    with pytest.raises(DataError, match=rf"d\.jsonl:1000: not valid UTF-8: byte 0xe9"):
        _samples(path, on_bad_row="error")


def test_bom_crlf_and_utf16_with_bom(tmp_path):
    rows = _alpaca(3)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(rows) + b"\r\n")
    assert [s.where for s in _samples(bom)[0]] == [f"{bom}:{n}" for n in (1, 2, 3)]
    u16 = tmp_path / "u16.jsonl"
    u16.write_text("\n".join(r.decode() for r in rows) + "\n", encoding="utf-16")
    assert [s.messages[-1]["content"] for s in _samples(u16)[0]] == ["a0", "a1", "a2"]
    bare = tmp_path / "bare.jsonl"
    bare.write_text("\n".join(r.decode() for r in rows), encoding="utf-16-le")
    with pytest.raises(DataError, match="UTF-16 text without a byte-order mark"):
        _samples(bare)


def test_csv_json_txt_lose_only_the_bad_row(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_bytes(b"\xef\xbb\xbfinstruction,output\r\nq1,a1\r\n\"q\nmulti\",a2\r\nq\xe9,a3\r\nq4,a4\r\n")
    got = [(r.where, r.error is None) for r in read_rows(str(csv))]
    assert got == [(f"{csv}:2", True), (f"{csv}:3", True), (f"{csv}:5", False), (f"{csv}:6", True)]
    js = tmp_path / "d.json"
    rows = _alpaca(4)
    rows[2] = rows[2].replace(b"q2", b"q\xff")
    js.write_bytes(b"\xef\xbb\xbf[\n" + b",\n".join(rows) + b"\n]")
    got = [(r.where, r.error is None) for r in read_rows(str(js))]
    assert got == [(f"{js}:2", True), (f"{js}:3", True), (f"{js}:4", False), (f"{js}:5", True)]
    txt = tmp_path / "d.txt"
    txt.write_bytes(b"one\r\n\r\nbad \xff line\r\n\r\nthree\r\n")
    got = [(r.where, r.data) for r in read_rows(str(txt))]
    assert got == [(f"{txt}:1", {"text": "one"}), (f"{txt}:3", None), (f"{txt}:5", {"text": "three"})]


@pytest.mark.parametrize("name, content, message", [
    ("d.parquet", b"instruction,output\nq,a\n", "not a readable Parquet file"),
    ("d.txt", bytes(range(256)) * 8, "looks like a binary file"),
    ("d.jsonl", bytes(range(256)) * 8, "NUL byte at byte 0"),
])
def test_mislabelled_and_binary_files_are_a_message(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        _samples(path)


@pytest.mark.parametrize("suffix", ["jsonl", "json"])
def test_deeply_nested_row_is_skipped_and_named(tmp_path, suffix):
    deep = b'{"instruction": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    good = json.dumps(ROW).encode()
    path = tmp_path / f"d.{suffix}"
    body = [good, deep, good]
    path.write_bytes(b"\n".join(body) if suffix == "jsonl" else b"[\n" + b",\n".join(body) + b"\n]")
    samples, report = _samples(path)
    line = 2 if suffix == "jsonl" else 3
    assert len(samples) == 2 and report.dropped["invalid JSON"]["rows"][0]["where"] == f"{path}:{line}"
    with pytest.raises(DataError, match=f"d.{suffix}:{line}: nested too deeply"):
        _samples(path, on_bad_row="error")


@pytest.mark.parametrize("row, category, reason", [
    ('{"instruction": "q", "input": "", "output": 4}', "wrong type", "a number (4;"),
    ('{"instruction": NaN, "input": "", "output": "a"}', "wrong type", "NaN"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}, "missing field", "has no 'content'"),
    ({"conversations": [{"from": "human"}, {"from": "gpt", "value": "a"}]}, "missing field", "has no 'value'"),
    ({"messages": [{"role": "user", "content": 7}, {"role": "assistant", "content": "a"}]}, "wrong type", "(7;"),
])
def test_wrong_types_and_missing_content_are_bad_rows(tmp_path, row, category, reason):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]} \
        if isinstance(row, dict) and "messages" in row else \
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]} \
        if isinstance(row, dict) else ROW
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(good) + "\n" + (row if isinstance(row, str) else json.dumps(row)) + "\n")
    samples, report = _samples(path)
    assert len(samples) == 1 and report.dropped[category]["count"] == 1
    entry = report.dropped[category]["rows"][0]
    assert entry["where"] == f"{path}:2" and reason in entry["reason"]
    seen = []
    validate_data(str(path), on_problem=seen.append)  # `danlu data validate` sees it too
    assert [p.where for p in seen] == [f"{path}:2"] and reason in seen[0].reason
