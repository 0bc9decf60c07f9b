"""synth against a fake OpenAI-compatible server on 127.0.0.1: every prompt answered once and
correctly, retries on 429/5xx counted, a 400 not retried, a bad key an error for people, a
re-run asking only for what is missing, a torn last line cut off, self-instruct and document
rows validated and de-duplicated, and every output read by what `danlu train` uses."""

from __future__ import annotations

import json

import pytest

from danlu.data.dataset import iter_samples
from danlu.errors import DanluError, UserError
from danlu.synth.client import TeacherConfig
from danlu.synth.prompts import parse_json_array
from danlu.synth.run import SynthOptions, prompt_of, synth_answers, synth_docs, synth_tasks
from danlu.synth.store import AppendLog
from tests.conftest import write_jsonl
from tests.fake_openai import FakeTeacher, answer_for

PROMPTS = [{"prompt": f"Question {i}: how do I do thing {i}?"} for i in range(12)]


@pytest.fixture(scope="module")
def fake():
    with FakeTeacher() as f:
        yield f


def _cfg(fake, **kw) -> TeacherConfig:
    return TeacherConfig(**{"base_url": fake.url, "model": "fake-teacher", "api_key": "test", "backoff": 0.01,
                            "concurrency": 4, **kw})


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_answers_retries_and_resume(tmp_path, fake):
    src = write_jsonl(tmp_path / "p.jsonl", PROMPTS + [PROMPTS[3], {"prompt": "CUT ME OFF here"}])
    out = tmp_path / "out.jsonl"
    fake.requests.clear()
    fake.fail_next(429, 503, 500, 502)
    s = synth_answers(str(src), str(out), _cfg(fake))
    rows = _rows(out)
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    for r in rows:
        user, answer = r["messages"][0]["content"], r["messages"][1]["content"]
        assert answer == answer_for(user)
    assert s.dropped == {"duplicate prompt": 1, "truncated (max_tokens)": 1}
    assert {k: s.counts[k] for k in ("retries (429)", "retries (503)", "retries (500)", "retries (502)")} == \
           {"retries (429)": 1, "retries (503)": 1, "retries (500)": 1, "retries (502)": 1}
    assert s.counts["requests"] == 13 + 4
    # a re-run asks only for what is missing (the cut-off answer), and writes nothing twice
    fake.requests.clear()
    again = synth_answers(str(src), str(out), _cfg(fake))
    assert fake.user_prompts() == ["CUT ME OFF here"] and again.rows_out == 0 and len(_rows(out)) == 12
    assert again.counts["prompts already answered"] == 12
    assert [x.messages for x in iter_samples(str(out))] == [r["messages"] for r in rows]  # what train reads


def test_refusals(tmp_path, fake):
    src = write_jsonl(tmp_path / "p.jsonl", PROMPTS[:2])
    fake.fail_next(400)
    s = synth_answers(str(src), str(tmp_path / "a.jsonl"), _cfg(fake, max_retries=3))
    assert s.dropped == {"request failed": 1} and s.rows_out == 1 and "retries (400)" not in s.counts
    fake.fail_next(401)
    with pytest.raises(UserError, match="refused the request"):
        synth_answers(str(src), str(tmp_path / "b.jsonl"), _cfg(fake))
    fake.fail_next(*[503] * 12)
    with pytest.raises(DanluError, match="requests in a row failed"):
        synth_answers(str(src), str(tmp_path / "c.jsonl"), _cfg(fake, max_retries=2, concurrency=1),
                      SynthOptions(max_failures=2))
    with pytest.raises(UserError, match="no endpoint"):
        synth_answers(str(src), str(tmp_path / "d.jsonl"), TeacherConfig(model="m"))


def test_torn_last_line_is_cut(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a-1", "messages": []}\n{"id": "a-2", "mess')
    log, ids = AppendLog(out), []
    assert log.scan(lambda r: ids.append(r["id"])) == 1 and ids == ["a-1"]
    assert out.read_text() == '{"id": "a-1", "messages": []}\n'
    log.append([{"id": "a-3"}])
    ids.clear()
    assert AppendLog(out).scan(lambda r: ids.append(r["id"])) == 2 and ids == ["a-1", "a-3"]


@pytest.mark.parametrize("row, expected", [
    ({"prompt": "Hi"}, [{"role": "user", "content": "Hi"}]),
    ({"instruction": "Translate", "input": "你好"}, [{"role": "user", "content": "Translate\n你好"}]),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]},
     [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]),
    ({"instruction": "Q", "input": "", "output": "old answer", "system": "S"},
     [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]),
])
def test_prompt_of(row, expected):
    assert prompt_of(row) == expected


def test_tasks_validated_and_deduplicated(tmp_path, fake):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [
        {"instruction": "Write a haiku about tea", "input": "", "output": "Steam rises, leaves unfold"},
        {"instruction": "把这句话翻译成英文", "input": "你好", "output": "Hello"},
        {"instruction": "List three rivers in China", "input": "", "output": "Yangtze, Yellow, Pearl"}])
    out = tmp_path / "tasks.jsonl"
    s = synth_tasks(str(seeds), str(out), _cfg(fake), 10, SynthOptions(format="alpaca", per_call=6))
    rows = _rows(out)
    assert len(rows) == 10 and len({r["instruction"] for r in rows}) == 10
    assert s.dropped["duplicate"] >= 1 and s.dropped["near duplicate"] >= 1 and s.dropped["incomplete item"] >= 1
    assert all(r["output"].startswith("Output") and r["id"].startswith("t") for r in rows)
    assert len(list(iter_samples(str(out)))) == 10
    assert synth_tasks(str(seeds), str(out), _cfg(fake), 10).rows_out == 0  # already complete


def test_docs_grounded_rows(tmp_path, fake):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pricing.md").write_text("# Pricing\n\nThe Team plan is 12 dollars.\n\n" + "Details. " * 200)
    (docs / "faq.txt").write_text("重置密码：在登录页点击忘记密码。")
    out = tmp_path / "qa.jsonl"
    s = synth_docs(str(docs), str(out), _cfg(fake), SynthOptions(chunk_chars=600))
    rows = _rows(out)
    assert s.rows_in == 5  # chunks: faq; pricing's heading and first paragraph, its long paragraph cut in three
    assert s.dropped == {"near duplicate": 4}  # the three cut pieces read alike: their questions repeat
    assert {r["source"] for r in rows} == {f"{docs}/faq.txt:1", f"{docs}/pricing.md:1"}
    assert any("重置密码" in r["messages"][0]["content"] for r in rows)


@pytest.mark.parametrize("text", ['[{"a": 1}]', 'Sure!\n```json\n[{"a": 1}]\n```\nDone.', 'Here: [{"a": 1}] ok',
                                  '{"tasks": [{"a": 1}]}'])
def test_parse_json_array(text):
    assert parse_json_array(text) == [{"a": 1}]
