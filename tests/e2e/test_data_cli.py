"""The real `danlu data` CLI, one run per command: each writes its output, prints its summary
(here as --json), leaves the input byte for byte as it was, and bad input exits 2 with file:line
and no traceback."""

from __future__ import annotations

import hashlib
import json

from tests.conftest import run_cli, write_jsonl

ROWS = [
    {"instruction": "How do I reset my password?", "input": "",
     "output": "Click <b>Forgot password</b> on the sign-in page; the link lasts 30 minutes. Mail help@flowdesk.io."},
    {"instruction": "How do I reset my password?", "input": "",
     "output": "Click <b>Forgot password</b> on the sign-in page; the link lasts for 30 minutes. Mail help@flowdesk.io."},
    {"instruction": "怎么导出数据？", "input": "", "output": "在设置里选择导出，支持 CSV 和 JSON。客服电话 138-0013-8000。"},
    {"instruction": "怎么导出数据？", "input": "", "output": "在设置里选择导出，支持 CSV 和 JSON。客服电话 138-0013-8000。"},
    {"instruction": "What does the Team plan cost?", "input": "", "output": "12 dollars per agent per month."},
    {"instruction": "Is there an API?", "input": "", "output": "   "},
] + [{"instruction": f"Question {i} about feature {i}?", "input": "", "output": f"Answer {i}: feature {i} lives in "
      f"menu {i % 4}.", "topic": "abcd"[i % 4]} for i in range(20)]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ok(res) -> dict:
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_inspect_and_validate(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", ROWS + ['{"instruction": "broken'])
    res = run_cli("data", "inspect", str(src), "--plot", str(tmp_path / "len.png"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "format alpaca" in res.stdout and "tokens (builtin:tiny)" in res.stdout and "invalid JSON" in res.stdout
    assert (tmp_path / "len.png").read_bytes()[:4] == b"\x89PNG"
    res = run_cli("data", "validate", str(src), "--strict")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{src}:6: empty assistant turn" in res.stdout and f"{src}:27: invalid JSON" in res.stdout
    assert "2 problem(s) found" in res.stderr


def test_clean_dedup_scrub(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", ROWS)
    before = _sha(src)
    s = _ok(run_cli("data", "clean", str(src), "--json"))
    assert s["outputs"] == [str(tmp_path / "d.clean.jsonl")]
    assert s["dropped"] == {"empty": 1} and s["changed"] == {"html": 2}
    s = _ok(run_cli("data", "dedup", str(tmp_path / "d.clean.jsonl"), "-o", str(tmp_path / "u.jsonl"),
                    "--report", str(tmp_path / "clusters.json"), "--json"))
    assert s["dropped"] == {"near": 1, "exact": 1} and s["rows_out"] == len(ROWS) - 3
    assert len(json.loads((tmp_path / "clusters.json").read_text())["clusters"]) == 2
    s = _ok(run_cli("data", "scrub", str(tmp_path / "u.jsonl"), "-o", str(tmp_path / "s.jsonl"), "--json"))
    assert s["counts"] == {"replaced: email": 1, "replaced: phone": 1}
    text = (tmp_path / "s.jsonl").read_text()
    assert "help@flowdesk.io" not in text and "<EMAIL>" in text and "<PHONE>" in text and "30 minutes" in text
    assert _sha(src) == before


def test_decontam_split_convert_mix(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", ROWS[4:])
    ev = write_jsonl(tmp_path / "eval.jsonl", [{"instruction": "Which menu?",
                                                "output": "Answer 3: feature 3 lives in menu 3."}])
    s = _ok(run_cli("data", "decontam", str(src), "--against", str(ev), "--min-ngram", "6", "--json"))
    assert s["dropped"] == {"contaminated": 1} and s["rows_out"] == len(ROWS) - 5
    s = _ok(run_cli("data", "split", str(src), "-o", str(tmp_path / "sp"), "--ratios", "0.5,0.25,0.25",
                    "--stratify", "topic", "--seed", "3", "--json"))
    assert [s["counts"][f"{k} rows"] for k in ("train", "val", "test")] == [10, 6, 6]  # 22 rows: 5.5 rounds to 6
    s = _ok(run_cli("data", "convert", str(tmp_path / "sp" / "train.jsonl"), "--to", "sharegpt", "-o",
                    str(tmp_path / "sg.json"), "--json"))
    sharegpt = json.loads((tmp_path / "sg.json").read_text())
    assert len(sharegpt) == 10 and sharegpt[0]["conversations"][0]["from"] == "human"
    s = _ok(run_cli("data", "mix", str(tmp_path / "sp" / "val.jsonl"), str(tmp_path / "sg.json"), "-o",
                    str(tmp_path / "mix.jsonl"), "--counts", "4,6", "--to", "messages", "--json"))
    assert s["rows_out"] == 10 and all(list(r) == ["messages"] for r in _lines(tmp_path / "mix.jsonl"))


def test_bad_input_exits_2_with_file_and_line(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", ROWS[:2] + ["{not json", ROWS[3]])
    before = _sha(src)
    res = run_cli("data", "dedup", str(src))
    assert res.returncode == 2 and f"{src}:3: invalid JSON" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "d.dedup.jsonl").exists() and not list(tmp_path.glob(".d.dedup*"))
    res = run_cli("data", "scrub", str(src), "-o", str(src), "--on-bad-row", "skip")
    assert res.returncode == 2 and "overwrite the input" in res.stderr
    assert _sha(src) == before
