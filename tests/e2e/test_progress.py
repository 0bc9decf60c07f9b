"""Progress bars (danlu/progress.py): shown on a terminal (a pseudo-TTY here) or with DANLU_PROGRESS=1,
absent from piped output (no carriage returns, no bar text) and with --quiet; log lines such as
"checkpoint saved" go above a bar, never onto its line."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest
import transformers  # noqa: F401  imported before the in-process CLI sets its environment (the xdist order that showed transformers' loading bars)

from tests.conftest import ROOT, tiny_config
from tests.e2e.test_stages_a import cli

BAR = "|"  # tqdm's "desc:  50%|█████     | 1/2 [00:00<00:00, ...]"


@pytest.fixture(autouse=True)
def unforced(monkeypatch):
    monkeypatch.delenv("DANLU_PROGRESS", raising=False)  # restored afterwards (--quiet sets it)


def test_piped_output_has_no_bars(capsys, qa_file):
    code, out, err = cli(capsys, "eval", "builtin:tiny", "--data", str(qa_file), "--limit", "3", "--max-new-tokens",
                         "2", "--no-loss", "--out", str(qa_file.parent / "ev"))
    assert code == 0, err[-2000:]
    assert "\r" not in err and "answers of" not in err and "loading builtin:tiny" not in err


def test_forced_bars_and_quiet(capsys, monkeypatch, qa_file):
    monkeypatch.setenv("DANLU_PROGRESS", "1")
    code, out, err = cli(capsys, "eval", "builtin:tiny", "--data", str(qa_file), "--limit", "3", "--max-new-tokens",
                         "2", "--no-loss", "--out", str(qa_file.parent / "ev"))
    assert code == 0, err[-2000:]
    assert "answers of builtin:tiny" in err and "/3 [" in err and "loading builtin:tiny" in err
    code, out, err = cli(capsys, "--quiet", "chat", "builtin:tiny", "--prompt", "hi", "--max-new-tokens", "2")
    assert code == 0 and "loading builtin:tiny" not in err and "\r" not in err


def test_checkpoint_line_is_not_on_the_bar(capsys, monkeypatch, tmp_path, qa_file):
    monkeypatch.setenv("DANLU_PROGRESS", "1")
    cfg = tiny_config(tmp_path, qa_file, train={"max_steps": 2, "save_steps": 1, "max_length": 64},
                      eval={"strategy": "no"})
    code, out, err = cli(capsys, "train", str(cfg))
    assert code == 0, err[-2000:]
    lines = [line for line in err.split("\n") if "checkpoint saved" in line]
    assert len(lines) == 2
    for line in lines:  # what the terminal shows of that line: the text after its last carriage return
        assert line.split("\r")[-1].lstrip().startswith("checkpoint saved"), repr(line)
    assert "train: 100%" in err


def test_a_terminal_gets_a_bar(tmp_path):
    """stderr on a pseudo-terminal: the loading bar is drawn; stdout (a pipe) holds only the answer."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "100"}
    env.pop("DANLU_PROGRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "danlu", "chat", "builtin:tiny", "--prompt", "hi",
                             "--max-new-tokens", "2"], stdout=subprocess.PIPE, stderr=slave, env=env, cwd=tmp_path)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read().decode()
    assert proc.wait(timeout=120) == 0
    os.close(master)
    tty = b"".join(chunks).decode(errors="replace")
    assert "loading builtin:tiny" in tty and BAR in tty
    assert "loading" not in out and "\r" not in out
