"""Shared fixtures. Builtin models are cached under .pytest_cache/danlu_home (built once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DANLU_HOME", str(ROOT / ".pytest_cache" / "danlu_home"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# builtin test models are tiny: one thread per process avoids OpenMP spin-waits (10-70x slower with
# 2 threads on a busy 2-core machine, measured) and lets 2-process tests share the cores
os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run the real `danlu` CLI in a subprocess; returns CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    src = str(ROOT / "src")
    full_env["PYTHONPATH"] = src + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "danlu", *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def write_jsonl(path: Path, rows: list) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


QA = [
    ("What is FlowDesk?", "A help-desk product for small teams."),
    ("How much is the Team plan?", "12 dollars per agent per month."),
    ("流云工单是什么？", "一款面向小团队的工单系统。"),
    ("如何导出数据？", "在设置里选择导出，支持 CSV 和 JSON。"),
    ("Is there a free trial?", "Yes, 14 days, no card needed."),
    ("支持哪些集成？", "Slack、企业微信、钉钉、Jira 和 GitHub。"),
    ("Where is my data stored?", "In Frankfurt or Singapore, your choice."),
    ("怎么开启两步验证？", "在个人设置里绑定验证器应用即可。"),
]


@pytest.fixture
def qa_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "qa.jsonl", [{"instruction": q, "input": "", "output": a} for q, a in QA])


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from danlu.models.load import load_tokenizer

    return load_tokenizer("builtin:tiny")


def tiny_config(tmp_path: Path, data_file: Path, **sections) -> Path:
    """A small YAML config for builtin:tiny; sections override defaults (dicts are merged)."""
    import yaml

    cfg = {
        "model": {"name_or_path": "builtin:tiny"},
        "data": {"train": str(data_file)},
        "method": {"name": "lora", "r": 8},
        "train": {"max_steps": 6, "batch_size": 4, "learning_rate": 5e-3, "logging_steps": 1,
                  "max_length": 128, "report_to": [], "save_steps": 3},
        "output_dir": str(tmp_path / "run"),
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and key != "method":
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run only where CUDA is (bash bench/gpu_check.sh on a GPU machine)."""
    if not any("gpu" in item.keywords for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def one_torch_thread():
    """Body of the autouse `one_thread` fixtures: builtin and small real models gain nothing from a
    second torch thread, and on a shared 2-core machine two threads ran up to 10x slower (measured).
    Use as `one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
