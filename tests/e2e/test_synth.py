"""The real `danlu synth` CLI against a fake OpenAI-compatible server on 127.0.0.1: killed with
SIGKILL mid-run and run again, every prompt is answered exactly once, nothing received is lost,
nothing written is asked for again; the second run also rides out 429 and 503 with retries and
takes its endpoint and model from the environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, run_cli, write_jsonl
from tests.fake_openai import FakeTeacher, answer_for

N = 30


def _lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_kill_and_resume(tmp_path):
    prompts = [f"Prompt {i}: what is {i} squared?" for i in range(N)]
    src = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in prompts])
    out = tmp_path / "out.jsonl"
    with FakeTeacher(delay=0.25) as fake:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.Popen([sys.executable, "-m", "danlu", "synth", "answers", str(src), "-o", str(out),
                                 "--base-url", fake.url, "--model", "fake", "-j", "2"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while len(_lines(out)) < 6:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no rows arrived"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = [json.loads(line) for line in _lines(out)]  # every line whole
        assert 6 <= len(first) < N
        done = {r["messages"][0]["content"] for r in first}

        fake.delay = 0.0
        fake.requests.clear()
        fake.fail_next(429, 503)
        res = run_cli("synth", "answers", str(src), "-o", str(out), "--backoff", "0.01", "--json",
                      env={"DANLU_SYNTH_BASE_URL": fake.url, "DANLU_SYNTH_MODEL": "fake"})
        assert res.returncode == 0, res.stderr[-3000:]
        summary = json.loads(res.stdout)
        asked_again = fake.user_prompts()

    rows = [json.loads(line) for line in _lines(out)]
    assert len(rows) == N and len({r["id"] for r in rows}) == N
    assert sorted(r["messages"][0]["content"] for r in rows) == sorted(prompts)
    assert all(r["messages"][1]["content"] == answer_for(r["messages"][0]["content"]) for r in rows)
    assert rows[:len(first)] == first  # what the killed run wrote is kept as it was
    assert set(asked_again) == set(prompts) - done  # nothing already written is asked for again
    assert summary["rows_out"] == N - len(first) and summary["counts"]["prompts already answered"] == len(first)
    assert summary["counts"]["retries (429)"] == 1 and summary["counts"]["retries (503)"] == 1
