"""Run the seed recipe and danlu side by side on the same model, text, LoRA settings and
loss-bearing tokens; report tokens/s (steady-state median), peak memory, final loss and MFU for
both, and their ratios.

Both sides read the same file of `{"text": "User: ...\\nAssistant: ..."}` rows (the seed's own
prompt format), so both train on every token of the same token stream (+ EOS): identical work,
and only the engineering differs."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from pathlib import Path

import yaml

from danlu.bench.measure import python, run_measured, steady_tokens_per_s, useful_flops_per_token
from danlu.bench.peak import mfu_peak, peak_flops
from danlu.errors import ConfigError, DanluError, DataError, UserError

SEED_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def seed_text(sample) -> str:
    """Seed 003's format_prompt: 'User: {instruction}\\n{input}\\nAssistant: {response}'."""
    from danlu.chat.messages import Text

    if isinstance(sample, Text):
        return sample.text
    parts = []
    for m in sample.messages:
        if m["role"] == "user":
            parts.append(f"User: {m['content']}")
        elif m["role"] == "assistant":
            parts.append(f"Assistant: {m['content']}")
        elif m["role"] == "system":
            parts.append(m["content"])
    return "\n".join(parts)


def write_text_data(cfg, path: Path) -> int:
    from danlu.data.dataset import iter_samples
    from danlu.data.report import DataReport

    report = DataReport()
    rows = [{"text": seed_text(s)} for s in iter_samples(cfg.data.train, fmt=cfg.data.format, report=report)]
    if not rows:
        raise DataError(f"no usable rows in data.train ({report.rows_read} read, all malformed)",
                        where=str(cfg.data.train), hint="run `danlu data validate` on it to see each problem")
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def _lora(cfg) -> dict:
    m = cfg.method
    targets = m.target_modules if m.target_modules != "all-linear" else SEED_TARGETS
    return {"r": m.rank, "alpha": m.lora_alpha, "dropout": m.dropout, "target_modules": targets}


def run_seed(cfg, text: Path, work: Path, lr: float, bf16: bool | None = None, adapter_dir: Path | None = None) -> dict:
    t = cfg.train
    spec = {"bf16": bf16, "model": _model_path(cfg), "data": str(text), "output_dir": str(work / "seed-out"),
            "batch_size": t.batch_size, "grad_accum": t.grad_accum, "learning_rate": lr, "epochs": t.epochs,
            "max_steps": t.max_steps, "max_length": t.max_length, "seed": t.seed, **_lora(cfg),
            "qlora": cfg.method.quantize is not None, "result": str(work / "seed-result.json"),
            "adapter_dir": str(adapter_dir) if adapter_dir else None}
    (work / "seed-spec.json").write_text(json.dumps(spec))
    code, rss, wall = run_measured([python(), "-m", "danlu.bench.seed_recipe", str(work / "seed-spec.json")],
                                   env=_env(), log=work / "seed.log")
    if code != 0:
        raise DanluError(f"the seed recipe failed (exit {code}); see {work / 'seed.log'}")
    res = json.loads((work / "seed-result.json").read_text())
    return {**res, "peak_rss_bytes": rss, "wall_s": wall}


def run_danlu(cfg, text: Path, work: Path, lr: float) -> dict:
    data = cfg.to_yaml_dict()
    data["data"] = {**data["data"], "train": str(text), "format": "text", "eval": None, "eval_split": 0.0}
    data["train"].update(learning_rate=lr, logging_steps=1, save_steps=None, report_to=[], resume="never")
    data["eval"]["strategy"] = "no"
    data["output_dir"] = str(work / "danlu-run")
    path = work / "danlu.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    code, rss, wall = run_measured([python(), "-m", "danlu", "train", str(path), "--overwrite"], env=_env(),
                                   log=work / "danlu.log")
    if code != 0:
        raise DanluError(f"danlu train failed (exit {code}); see {work / 'danlu.log'}")
    run = work / "danlu-run"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps, last = [], 0
    for r in (r for r in rows if "loss" in r and "tokens" in r):
        tokens = r["tokens"] - last
        last = r["tokens"]
        if r.get("tokens_per_s"):
            steps.append({"step": r["step"], "tokens": tokens, "seconds": tokens / r["tokens_per_s"]})
    info = json.loads((run / "run_info.json").read_text())
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    losses = [r["loss"] for r in rows if "loss" in r and "train_loss" not in r]
    return {"steps": steps, "runtime_s": info.get("train_runtime_s"), "losses": losses,
            "final_loss": statistics.fmean(losses[-10:]) if losses else None, "loss_tokens": info.get("loss_tokens"),
            "trainable_params": info.get("trainable_params"), "total_params": info.get("total_params"),
            "peak_cuda_bytes": (info.get("peak_memory") or {}).get("cuda_max_allocated"),
            "peak_rss_bytes": rss, "wall_s": wall, "precision": info.get("precision"),
            "gradient_checkpointing": resolved["train"].get("gradient_checkpointing"), "levers": info.get("levers")}


def _model_path(cfg) -> str:
    from danlu.models.load import resolve_model_path

    return resolve_model_path(cfg.model.name_or_path)


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def summarise(side: dict, peak: dict, n_base: int) -> dict:
    tps = steady_tokens_per_s(side["steps"])
    flops = useful_flops_per_token(n_base, side.get("trainable_params") or 0, full=False)
    best, _ = mfu_peak(peak)
    mem = side.get("peak_cuda_bytes") or side["peak_rss_bytes"]
    return {"tokens_per_s": tps, "peak_memory_bytes": mem, "peak_rss_bytes": side["peak_rss_bytes"],
            "final_loss": side["final_loss"], "loss_tokens": side.get("loss_tokens"), "runtime_s": side.get("runtime_s"),
            "mfu": (tps * flops / best) if tps else None, "precision": side.get("precision"),
            "gradient_checkpointing": side.get("gradient_checkpointing"),
            **({"levers": side["levers"]} if side.get("levers") else {})}


SEED_PRECISIONS = ("as-written", "fp32")


def run_bench(cfg, out_dir: Path, *, results_dir: Path | None = None, seed_precision: str = "as-written",
              name: str | None = None, remeasure_peak: bool = False) -> dict:
    """seed_precision: "as-written" keeps TRL's defaults (bf16 autocast); "fp32" turns autocast off,
    the fair comparison on a CPU without native bf16."""
    from danlu.methods.lora import Lora

    if not isinstance(cfg.method, Lora):
        raise ConfigError(f"danlu bench compares LoRA/QLoRA runs with the seed recipe; this config trains "
                          f"{cfg.method.name!r}", where="method.name", hint="set method.name: lora or qlora")
    out_dir.mkdir(parents=True, exist_ok=True)
    text = out_dir / "bench-text.jsonl"
    rows = write_text_data(cfg, text)
    lr = cfg.train.learning_rate if cfg.train.learning_rate != "auto" else 2e-4
    if seed_precision not in SEED_PRECISIONS:
        raise UserError(f"--seed-precision {seed_precision!r}: choose one of {', '.join(SEED_PRECISIONS)}")
    seed = run_seed(cfg, text, out_dir, lr, bf16=False if seed_precision == "fp32" else None)
    ours = run_danlu(cfg, text, out_dir, lr)
    peak = peak_flops(remeasure=remeasure_peak)
    n_base = (ours["total_params"] or 0) - (ours["trainable_params"] or 0)
    a, b = summarise(seed, peak, n_base), summarise(ours, peak, n_base)
    ratios = {"tokens_per_s": _ratio(b["tokens_per_s"], a["tokens_per_s"]),
              "peak_memory": _ratio(b["peak_memory_bytes"], a["peak_memory_bytes"]),
              "final_loss": _ratio(b["final_loss"], a["final_loss"])}
    result = {"date": datetime.date.today().isoformat(), "hardware": hardware_name(), "versions": versions(),
              "name": name, "config": cfg.to_yaml_dict(), "rows": rows, "peak_flops": peak,
              "seed_precision": seed_precision, "seed_recipe": a, "danlu": b, "ratios": ratios}
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
        # one file per reading: <date>-<hardware>[-<config name>].json (a second reading that day is -2, -3 ...)
        stem = "-".join(x for x in (result["date"], result["hardware"], name) if x)
        path, n = results_dir / f"{stem}.json", 2
        while path.exists():
            path, n = results_dir / f"{stem}-{n}.json", n + 1
        path.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
        result["written_to"] = str(path)
    return result


def _ratio(x, y):
    return round(x / y, 4) if x and y else None


def hardware_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0).replace(" ", "-").lower()
    return f"cpu-{os.cpu_count()}c-{platform.machine()}"


def versions() -> dict:
    import peft
    import torch
    import transformers
    import trl

    import danlu

    return {"danlu": danlu.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "trl": trl.__version__}
