"""Train a method in-process on builtin:tiny the way `danlu train` does (runner.build → the
stage's trainer → save_artefact), keeping what the tests compare: every tensor before and
after training, the loss curve, and the trained model's logits on a fixed probe."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tests.conftest import QA, ROOT, write_jsonl

PROBE = "<|im_start|>user\nHow much is the Team plan?<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class Trained:
    run_dir: Path
    method: object
    losses: list[float]
    requires_grad: set[str]
    before: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor]
    logits: torch.Tensor  # (1, T, V) of the trained model on PROBE, eval mode
    params: dict = field(default_factory=dict)  # trainable / total from the run context
    base_bytes: dict = field(default_factory=dict)  # bytes of the base's linear weights held after training
    linear_kinds: set[str] = field(default_factory=set)  # classes of the base's *_proj layers after training


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def probe_ids(tokenizer) -> torch.Tensor:
    return tokenizer(PROBE, return_tensors="pt", add_special_tokens=False)["input_ids"]


def qa_data(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return write_jsonl(tmp_path / "qa.jsonl", [{"instruction": q, "input": "", "output": a} for q, a in QA])


def config(tmp_path: Path, method: dict, *, model: str = "builtin:tiny", lr: float = 1e-2, steps: int = 20,
           **train):
    """The whole dataset (8 rows) is one batch: every step sees the same batch. fp32 compute unless
    the test asks otherwise: `precision: auto` picks bf16 autocast on CPUs with AVX512-BF16/AMX, and
    the table's exact reload/merge comparisons are about the method, not the precision."""
    from danlu.config.load import load_config_dict

    return load_config_dict({
        "model": {"name_or_path": model},
        "data": {"train": str(qa_data(tmp_path))},
        "method": method,
        "train": {"max_steps": steps, "batch_size": len(QA), "learning_rate": lr, "lr_scheduler": "constant",
                  "warmup_ratio": 0.0, "logging_steps": 1, "max_length": 128, "report_to": [], "save_steps": steps,
                  "precision": "fp32", **train},
        "output_dir": str(tmp_path / "run"),
    })


def train(cfg) -> Trained:
    from danlu.methods.lora import base_weight_bytes
    from danlu.train.artefact import save_artefact
    from danlu.train.runner import build, prepare_run_dir

    run_dir = prepare_run_dir(cfg, resume=False, overwrite=False, is_main=True)
    ctx, train_ds, eval_ds = build(cfg, run_dir=run_dir)
    before = snapshot(ctx.model)
    requires_grad = {n for n, p in ctx.model.named_parameters() if p.requires_grad}
    trainer = cfg.stage_options().build_trainer(ctx, train_ds, eval_ds)
    ctx.trainer = trainer
    trainer.train()
    save_artefact(ctx, trainer)
    model = ctx.model.eval()
    with torch.no_grad():
        logits = model(probe_ids(ctx.tokenizer)).logits
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    kinds = {type(getattr(m, "base_layer", m)).__name__ for n, m in model.named_modules() if n.endswith("_proj")}
    return Trained(run_dir, cfg.method, [r["loss"] for r in rows if "loss" in r], requires_grad, before,
                   snapshot(model), logits, ctx.params.as_dict(), base_weight_bytes(model), kinds)


RELOAD = """
import sys, torch
from safetensors.torch import save_file
from danlu.infer.load import load_for_inference
out = {}
for spec in sys.argv[2:]:
    key, run, merge = spec.split("|")
    loaded = load_for_inference(run, device="cpu")
    ids = loaded.tokenizer(PROBE, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out[key] = loaded.model(ids).logits.contiguous()
    if merge == "1":
        merged = load_for_inference(run, device="cpu", merge=True)
        assert type(merged.model).__name__.endswith("ForCausalLM"), type(merged.model)
        kinds = {type(m).__name__ for m in merged.model.modules()}
        assert not any("4bit" in k or "8bit" in k or "Lora" in k for k in kinds), kinds
        with torch.no_grad():
            out[key + ".merged"] = merged.model(ids).logits.contiguous()
save_file(out, sys.argv[1])
"""


def reload_in_fresh_process(runs: dict[str, Trained], out: Path) -> dict[str, torch.Tensor]:
    """Logits of every run reloaded by `load_for_inference` in a new Python process (and of
    its merged model, for methods that merge)."""
    import os

    from safetensors.torch import load_file

    specs = [f"{k}|{t.run_dir}|{int(t.method.can_merge)}" for k, t in runs.items()]
    code = f"PROBE = {PROBE!r}\n" + RELOAD
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", code, str(out), *specs], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return load_file(str(out))
