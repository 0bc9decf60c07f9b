"""Issue 19 through the real CLI: dirty encodings and pathological rows (RELIABILITY.md cases 15,
16), UI confinement (case 18) and a full disk while saving (case 4, with safetensors' own error)."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.conftest import QA, run_cli, tiny_config

# A writer that fails like a full disk: safetensors' own error type, raised by its save_file when
# the target path holds $DANLU_TEST_FULL (a test-only hook loaded through sitecustomize).
HOOK = '''
import os
import safetensors.torch as st
from safetensors import SafetensorError
_save = st.save_file
def save_file(tensors, filename, *a, **kw):
    if os.environ.get("DANLU_TEST_FULL", "\\0") in str(filename):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    return _save(tensors, filename, *a, **kw)
st.save_file = save_file
'''

BAD_BYTE = b'{"instruction": "Wh\xe0t is it?", "input": "", "output": "A latin-1 byte."}'


def _alpaca(i: int, q: str | None = None) -> bytes:
    return json.dumps({"instruction": q or QA[i % len(QA)][0], "input": "", "output": QA[i % len(QA)][1]},
                      ensure_ascii=False).encode()


@pytest.fixture(scope="module")
def dirty_run(tmp_path_factory):
    """One training run over every hostile row at once (so the suite pays for one run)."""
    root = tmp_path_factory.mktemp("dirty")
    rows = [_alpaca(i) for i in range(40)]
    rows[19] = BAD_BYTE  # line 20: a latin-1 byte
    rows[24] = json.dumps({"instruction": "q", "input": "", "output": 42}).encode()  # line 25: a number
    rows[29] = b'{"instruction": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"  # line 30: absurdly nested
    rows[34] = json.dumps({"instruction": "Say it long", "input": "", "output": "long answer " * 200_000}).encode()
    alpaca = root / "dirty.jsonl"
    alpaca.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(rows) + b"\r\n")  # BOM + CRLF
    turns = []
    for i in range(20_000):
        turns += [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]
    convo = root / "convo.jsonl"
    convo.write_text("\n".join(json.dumps(r) for r in [
        {"messages": turns},
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "no question"}]},  # line 2: no content
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    ]) + "\n")
    cfg = tiny_config(root, alpaca, data={"train": [str(alpaca), str(convo)]}, train={"max_steps": 1})
    start = time.monotonic()
    res = run_cli("train", str(cfg))
    return res, time.monotonic() - start, root, alpaca, convo


def test_dirty_and_pathological_rows_cost_only_themselves(dirty_run):
    res, seconds, root, alpaca, convo = dirty_run
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    report = json.loads((root / "run" / "data_report.json").read_text())["train"]
    assert report["rows_read"] == 43
    where = {r["where"] for e in report["dropped_by_reason"].values() for r in e["rows"]}
    assert where == {f"{alpaca}:20", f"{alpaca}:25", f"{alpaca}:30", f"{convo}:2"}
    assert report["kept"] == 43 - 4  # the BOM's first row, the 2.4 MB row and the 20,000 turns kept (cut)
    assert {r["where"] for r in report["truncated_rows"]} == {f"{alpaca}:35", f"{convo}:1"}
    assert seconds < 240  # the old code needed > 300 s for the 20,000 turns alone


def test_bad_byte_under_on_bad_row_error_names_the_line(tmp_path):
    rows = [_alpaca(i) for i in range(30)]
    rows[19] = BAD_BYTE
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"\n".join(rows) + b"\n")
    res = run_cli("train", str(tiny_config(tmp_path, data, data={"on_bad_row": "error"})))
    assert res.returncode == 2 and f"{data}:20: not valid UTF-8" in res.stderr and "Traceback" not in res.stderr


def test_ui_refuses_resume_and_reward_code_outside_the_workspace(tmp_path):
    from danlu.errors import UserError
    from danlu.ui.jobs import Jobs
    from danlu.ui.launch import launch_training
    from danlu.ui.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    (tmp_path / "evil.py").write_text("open('/tmp/pwned', 'w')\ndef f(**kw):\n    return []\n")
    base = {"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "d.jsonl"}, "method": {"name": "lora"},
            "output_dir": "runs/a"}
    for extra, key in ((({"train": {"resume": str(tmp_path / "other" / "checkpoints" / "step-4")}}), "train.resume"),
                       ({"stage": "grpo", "grpo": {"reward_functions": [f"{tmp_path / 'evil.py'}:f"]}},
                        "grpo.reward_functions[0]"),
                       ({"stage": "grpo", "grpo": {"reward_functions": ["os:system"]}}, "grpo.reward_functions[0]")):
        with pytest.raises(UserError, match="outside the workspace|not a file of the workspace") as exc:
            launch_training(ws, Jobs(), {**base, **extra})
        assert key in str(exc.value)
    assert not (ws.root / "runs" / "a").exists()


def _hook(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    return str(hook)


@pytest.mark.parametrize("full_at, what", [("step-4", "checkpoint"), (".tmp-adapter", "the adapter")])
def test_disk_full_in_a_safetensors_save_is_exit_2_naming_path_and_bytes(tmp_path, full_at, what):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"\n".join(_alpaca(i) for i in range(8)) + b"\n")
    cfg = tiny_config(tmp_path, data, train={"max_steps": 4, "save_steps": 2})
    res = run_cli("train", str(cfg), env={"PYTHONPATH": _hook(tmp_path), "DANLU_TEST_FULL": full_at})
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr and "SafetensorError" not in res.stderr
    assert f"disk full while saving {what}" in res.stderr and "bytes" in res.stderr and " free" in res.stderr
    ckpts = tmp_path / "run" / "checkpoints"
    assert (ckpts / "step-2" / "COMPLETE").is_file()  # the last good checkpoint is intact
    assert not any(p.name.startswith(".tmp") for p in [*ckpts.iterdir(), *(tmp_path / "run").iterdir()])
    assert not (tmp_path / "run" / "adapter").exists()


def test_disk_full_during_export_is_exit_2(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"\n".join(_alpaca(i) for i in range(8)) + b"\n")
    cfg = tiny_config(tmp_path, data, train={"max_steps": 1})
    assert run_cli("train", str(cfg)).returncode == 0
    out = tmp_path / "merged-out"
    res = run_cli("export", str(tmp_path / "run"), "--merge", "-o", str(out),
                  env={"PYTHONPATH": _hook(tmp_path), "DANLU_TEST_FULL": "merged-out"})
    assert res.returncode == 2, res.stderr[-3000:]
    assert f"disk full while saving the export {out}" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "merged-out" in p.name]
