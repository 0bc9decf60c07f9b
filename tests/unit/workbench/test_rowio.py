"""Shared workbench plumbing: which strings of a row are content, the normalisations matching
uses, atomic output (a failed command leaves the old output intact and no temp file), the
guard against overwriting the input, and bad rows stopping a command with file:line."""

from __future__ import annotations

import pytest

from danlu.errors import DataError, UserError
from danlu.workbench.rowio import AtomicRowWriter, check_output, iter_good_rows
from danlu.workbench.rowtext import content_text, iter_strings, language_of, map_strings, match_key, tokens
from tests.conftest import write_jsonl


def test_content_strings_skip_names_and_tags():
    row = {"messages": [{"role": "user", "content": "Hi", "name": "ann"}, {"role": "assistant", "content": "Yo"}],
           "label": "greeting", "id": "r1"}
    assert list(iter_strings(row)) == ["Hi", "Yo"]
    assert content_text(row) == "Hi\nYo"
    assert map_strings(row, str.upper) == {**row, "messages": [{"role": "user", "content": "HI", "name": "ann"},
                                                               {"role": "assistant", "content": "YO"}]}
    assert list(iter_strings({"instruction": "a", "output": "b"}, ("output",))) == ["b"]


@pytest.mark.parametrize("a, b", [("Hello, World!", "hello world"), ("你好，世界。", "你好世界"), ("ＡＢＣ 1", "abc1")])
def test_match_key(a, b):
    assert match_key(a) == match_key(b)


def test_tokens_and_language():
    assert tokens("Reset 密码 now!") == ["reset", "密", "码", "now"]
    assert language_of("怎么在 Slack 里创建 API 工单？") == "zh"
    assert language_of("How do I reset my password?") == "en"
    assert language_of("パスワードを忘れました") == "ja"
    assert language_of("12345 !!!") == "other"


def test_atomic_writer_keeps_old_output_on_failure(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    with pytest.raises(RuntimeError):
        with AtomicRowWriter(out) as w:
            w.write({"a": 1})
            raise RuntimeError("crash mid-way")
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    with AtomicRowWriter(tmp_path / "arr.json") as w:
        w.write({"a": 1})
        w.write({"b": "二"})
    import json

    assert json.loads((tmp_path / "arr.json").read_text()) == [{"a": 1}, {"b": "二"}]


def test_output_never_the_input(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}])
    with pytest.raises(UserError, match="overwrite the input"):
        check_output(src, [str(src)])
    with pytest.raises(UserError, match="cannot write"):
        check_output(tmp_path / "out.csv", [str(src)])


def test_bad_row_stops_with_file_and_line(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", [{"text": "ok"}, '{"text": broken', {"text": "ok too"}])
    with pytest.raises(DataError, match=r"d\.jsonl:2: invalid JSON"):
        list(iter_good_rows(str(src)))
    assert [r.where.rsplit(":", 1)[1] for r in iter_good_rows(str(src), "skip")] == ["1", "3"]
