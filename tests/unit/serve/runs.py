"""Tiny trained runs for the export and serve tests: trained once per test session, in-process
(`run_training`), on builtin models; and an untrained LoRA/DoRA adapter made directly with PEFT."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from tests.conftest import QA, tiny_config, write_jsonl

_ROOT = Path(tempfile.mkdtemp(prefix="danlu-test-runs-"))
atexit.register(shutil.rmtree, _ROOT, True)


@lru_cache(maxsize=None)
def trained_run(name: str, model: str = "builtin:tiny", reverse: bool = False, steps: int = 4) -> Path:
    """A LoRA run directory (`reverse` trains on reversed answers, so two runs answer differently)."""
    from danlu.config.load import load_config
    from danlu.train.runner import run_training

    folder = _ROOT / "runs" / name
    folder.mkdir(parents=True)
    rows = [{"instruction": q, "input": "", "output": a[::-1] if reverse else a} for q, a in QA]
    data = write_jsonl(folder / "qa.jsonl", rows)
    cfg = tiny_config(folder, data, model={"name_or_path": model}, output_dir=str(folder / name),
                      train={"max_steps": steps, "batch_size": 8, "learning_rate": 2e-2, "save_steps": 1000})
    run_training(load_config(cfg))
    return folder / name


@lru_cache(maxsize=None)
def peft_adapter(name: str, *, dora: bool = False, seed: int = 0) -> Path:
    """A random (B ≠ 0) LoRA or DoRA adapter on builtin:tiny with a danlu.json, without training."""
    import torch
    from peft import LoraConfig, get_peft_model

    from danlu.models.load import load_model, load_tokenizer

    torch.manual_seed(seed)
    base = load_model("builtin:tiny", dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", use_dora=dora,
                                            init_lora_weights=False, task_type="CAUSAL_LM"))
    out = _ROOT / "peft" / name
    model.save_pretrained(str(out))
    load_tokenizer("builtin:tiny").save_pretrained(str(out))
    meta = {"base_model": "builtin:tiny", "artefact": "adapter", "task": "causal_lm", "template": "tokenizer",
            "turn_end": "<|im_end|>", "stop_token_ids": [2],
            "method": {"name": "lora", "r": 4, "use_dora": dora}}
    (out / "danlu.json").write_text(json.dumps(meta), encoding="utf-8")
    return out


def one_torch_thread():
    """A fixture body: torch on one CPU thread for these tests. Tiny models gain nothing from more,
    and on a shared 2-core machine two OpenMP threads per process make each forward 20-40x slower
    (measured: 15 ms vs 400-600 ms per builtin:tiny forward under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
