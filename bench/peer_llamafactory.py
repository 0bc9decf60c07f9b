"""LLaMA-Factory and danlu side by side on the CPU bench (issue 24); run by peer_llamafactory.sh.

Same model (bench/.work/model, 33M Qwen2-shaped), same 400 alpaca rows, same system prompt,
qwen template on both sides, loss on the answers only, LoRA r16/alpha 32/dropout 0.05 on every
linear layer, batch 8, 1 epoch, lr 2e-4 linear, bf16 autocast, seed 42. Runs one after another:
LF default, LF `neat_packing`, danlu; each in its own process, peak RSS of its process tree
sampled every 50 ms. Writes ONE file: bench/results/<date>-<hardware>-peer-llamafactory.json.

loss-bearing tokens/s = the run's loss tokens (danlu's count; both sides tokenise the same rows
with the same template and mask) / the trainer's own train_runtime (model load and data
preparation left out on both sides); tokens per process CPU-second = the same tokens / the user+sys
CPU seconds of that side's whole process (model load and tokenisation included): on a shared machine
the steadier figure of the two. --model/--rows/--epochs/--tag run the same harness on a real model:
    bash bench/peer_llamafactory.sh --only lf-neat,danlu --model ~/.cache/danlu/gguf/SmolLM2-135M-Instruct.Q4_1-*/ \
        --rows examples/data/support_qa.jsonl --tag smollm2"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from danlu.bench.measure import run_measured  # noqa: E402
from danlu.bench.runner import hardware_name  # noqa: E402

LF_SIDES = {"lf-neat": {"packing": True, "neat_packing": True}, "lf-default": {}}
SYSTEM = "You are a helpful assistant."
COMMON = {"batch": 8, "epochs": 1, "lr": 2e-4, "max_length": 512, "r": 16, "alpha": 32, "dropout": 0.05, "seed": 42}


def lf_dataset(rows_path: Path, out: Path) -> None:
    rows = [json.loads(x) for x in rows_path.read_text(encoding="utf-8").splitlines() if x.strip()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "alpaca400.json").write_text(json.dumps([{**r, "system": SYSTEM} for r in rows], ensure_ascii=False),
                                        encoding="utf-8")
    info = {"alpaca400": {"file_name": "alpaca400.json",
                          "columns": {"prompt": "instruction", "query": "input", "response": "output",
                                      "system": "system"}}}
    (out / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")


def lf_config(work: Path, model: Path, name: str, extra: dict) -> Path:
    c = COMMON
    cfg = {"model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
           "lora_rank": c["r"], "lora_alpha": c["alpha"], "lora_dropout": c["dropout"], "lora_target": "all",
           "dataset": "alpaca400", "dataset_dir": str(work / "lf-data"), "template": "qwen",
           "cutoff_len": c["max_length"], "overwrite_cache": True, "preprocessing_num_workers": 1,
           "output_dir": str(work / f"out-{name}"), "overwrite_output_dir": True, "logging_steps": 1,
           "save_strategy": "no", "per_device_train_batch_size": c["batch"], "gradient_accumulation_steps": 1,
           "learning_rate": c["lr"], "num_train_epochs": c["epochs"], "lr_scheduler_type": "linear",
           "warmup_ratio": 0.0, "bf16": True, "report_to": "none", "seed": c["seed"], "plot_loss": False,
           "dataloader_num_workers": 0, "use_cpu": True, **extra}
    path = work / f"lf-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def child_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_lf(work: Path, lf_bin: Path, model: Path, name: str, extra: dict, threads: int) -> dict:
    cfg = lf_config(work, model, name, extra)
    cpu0 = child_cpu_s()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads), "DISABLE_VERSION_CHECK": "1",
           "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true", "PYTHONPATH": ""}
    code, rss, wall = run_measured([str(lf_bin / "llamafactory-cli"), "train", str(cfg)], env=env,
                                   log=work / f"lf-{name}.log")
    if code != 0:
        raise SystemExit(f"LLaMA-Factory ({name}) failed, exit {code}: see {work / f'lf-{name}.log'}")
    out = work / f"out-{name}"
    logs = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines() if x.strip()]
    losses = [r["loss"] for r in logs if "loss" in r]
    res = json.loads((out / "train_results.json").read_text())
    steps = max(r.get("current_steps", 0) for r in logs)
    return {"train_s": res["train_runtime"], "steps": steps, "losses": losses, "peak_rss_bytes": rss, "wall_s": wall,
            "process_cpu_s": child_cpu_s() - cpu0}


def danlu_config(work: Path, rows: Path, model: Path, extra_train: dict) -> Path:
    c = COMMON
    cfg = {"model": {"name_or_path": str(model)},
           "data": {"train": str(rows), "format": "alpaca", "template": "qwen", "system": SYSTEM},
           "method": {"name": "lora", "r": c["r"], "alpha": c["alpha"], "dropout": c["dropout"],
                      "target_modules": "all-linear"},
           "train": {"epochs": c["epochs"], "batch_size": c["batch"], "max_length": c["max_length"],
                     "learning_rate": c["lr"], "lr_scheduler": "linear", "warmup_ratio": 0.0, "seed": c["seed"],
                     "logging_steps": 1, "save_steps": None, "report_to": [], "resume": "never", **extra_train},
           "eval": {"strategy": "no"}, "output_dir": str(work / "out-danlu")}
    path = work / "danlu.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def run_danlu(work: Path, rows: Path, model: Path, threads: int, extra_train: dict) -> dict:
    path = danlu_config(work, rows, model, extra_train)
    cpu0 = child_cpu_s()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src"),
           "TOKENIZERS_PARALLELISM": "false"}
    code, rss, wall = run_measured([sys.executable, "-m", "danlu", "train", str(path), "--overwrite"], env=env,
                                   log=work / "danlu.log")
    if code != 0:
        raise SystemExit(f"danlu train failed, exit {code}: see {work / 'danlu.log'}")
    run = work / "out-danlu"
    rows_ = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    losses = [r["loss"] for r in rows_ if "loss" in r and "train_loss" not in r]
    info = json.loads((run / "run_info.json").read_text())
    runtime = next((r["train_runtime"] for r in rows_ if "train_runtime" in r), info["train_runtime_s"])
    return {"train_s": runtime, "steps": info["global_step"], "losses": losses, "peak_rss_bytes": rss,
            "wall_s": wall, "loss_tokens": info["loss_tokens"], "precision": info.get("precision"),
            "process_cpu_s": child_cpu_s() - cpu0}


def row(side: dict, loss_tokens: int) -> dict:
    return {"tokens_per_s": round(loss_tokens / side["train_s"], 1), "train_s": round(side["train_s"], 1),
            "peak_rss_gib": round(side["peak_rss_bytes"] / 2**30, 3), "steps": side["steps"],
            "final_loss": round(statistics.fmean(side["losses"][-10:]), 4) if side["losses"] else None,
            "first_loss": side["losses"][0] if side["losses"] else None, "wall_s": round(side["wall_s"], 1),
            "load_1min_before_after": side.get("load_1min"),
            "process_cpu_s": round(side["process_cpu_s"], 1),
            "tokens_per_process_cpu_s": round(loss_tokens / side["process_cpu_s"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lf-bin", default=str(ROOT / "bench" / ".work" / "lf-venv" / "bin"))
    ap.add_argument("--work", default=str(ROOT / "bench" / ".work" / "peer"))
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--threads", type=int, default=1,
                    help="OMP threads per side; 1 on a shared machine (2 threads spin-wait under load)")
    ap.add_argument("--only", default="lf-neat,danlu,lf-default", help="sides to run, in this order")
    ap.add_argument("--danlu-train", default="{}", help="JSON: extra danlu train.* settings (a lever)")
    ap.add_argument("--model", default=str(ROOT / "bench" / ".work" / "model"),
                    help="a Hugging Face folder both sides load (the real-model run: danlu's dequantised "
                         "SmolLM2 folder under $DANLU_HOME/gguf/)")
    ap.add_argument("--rows", default=str(ROOT / "bench" / ".work" / "alpaca400.jsonl"), help="alpaca JSONL rows")
    ap.add_argument("--epochs", type=int, default=COMMON["epochs"])
    ap.add_argument("--tag", default="", help="appended to the results file name (e.g. smollm2)")
    args = ap.parse_args()
    COMMON["epochs"] = args.epochs
    work, model, rows = Path(args.work), Path(args.model).resolve(), Path(args.rows).resolve()
    work.mkdir(parents=True, exist_ok=True)
    lf_dataset(rows, work / "lf-data")
    load0 = os.getloadavg()
    sides, path = {}, None
    for name in args.only.split(","):  # in the order given: the headline pair first
        load_before = os.getloadavg()[0]
        if name == "danlu":
            sides[name] = run_danlu(work, rows, model, args.threads, json.loads(args.danlu_train))
        elif name in LF_SIDES:
            sides[name] = run_lf(work, Path(args.lf_bin), model, name.removeprefix("lf-"), LF_SIDES[name],
                                 args.threads)
        else:
            raise SystemExit(f"--only: unknown side {name!r}; choose from danlu, {', '.join(LF_SIDES)}")
        sides[name]["load_1min"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        if "danlu" in sides:  # rewritten after every side: a cut-short run still leaves its rows
            path = write(sides, args, load0, path)


def write(sides: dict, args, load0, path: Path | None) -> Path:
    tokens = sides["danlu"]["loss_tokens"]
    table = {k: row(v, tokens) for k, v in sides.items()}
    ratios = {}
    if "danlu" in table:
        d = table["danlu"]
        for k in (k for k in table if k != "danlu"):
            ratios[f"danlu/{k}"] = {"tokens_per_s": round(d["tokens_per_s"] / table[k]["tokens_per_s"], 3),
                                    "tokens_per_process_cpu_s": round(d["tokens_per_process_cpu_s"]
                                                                      / table[k]["tokens_per_process_cpu_s"], 3),
                                    "peak_rss": round(d["peak_rss_gib"] / table[k]["peak_rss_gib"], 3)}
    note = ("LF packing (neat_packing) packs the whole dataset before batching, so its run has fewer optimizer "
            "steps than the unpacked run; danlu packs within each batch of 8 and keeps the run's semantics "
            "(same steps, same samples per step).")
    lf_versions = subprocess.run([str(Path(args.lf_bin) / "python"), "-c", "import importlib.metadata as m; "
                                  "print({p: m.version(p) for p in ('llamafactory','transformers','peft','trl','torch')})"],
                                 capture_output=True, text=True).stdout.strip()
    result = {"date": datetime.date.today().isoformat(), "hardware": hardware_name(), "threads": args.threads,
              "loadavg_before": load0, "loadavg_after": os.getloadavg(), "loss_tokens": tokens,
              "lf_versions": lf_versions, "danlu_train_extra": json.loads(args.danlu_train),
              "model": str(args.model), "data": str(args.rows), "rows": table, "ratios": ratios, "note": note, "common": COMMON, "system": SYSTEM}
    result["sides_done"] = list(sides)
    if path is None:
        res_dir = Path(args.results)
        res_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{result['date']}-{result['hardware']}-peer-llamafactory{'-' + args.tag if args.tag else ''}"
        path, n = res_dir / f"{stem}.json", 2
        while path.exists():
            path, n = res_dir / f"{stem}-{n}.json", n + 1
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"{'':12} {'loss tok/s':>10} {'train s':>8} {'tok/CPU-s':>9} {'peak RSS':>9} {'steps':>5} {'final loss':>10}")
    for k, r in table.items():
        print(f"{k:12} {r['tokens_per_s']:>10} {r['train_s']:>8} {r['tokens_per_process_cpu_s']:>9} "
              f"{r['peak_rss_gib']:>8}G {r['steps']:>5} {r['final_loss']:>10}  load {r['load_1min_before_after']}")
    for k, r in ratios.items():
        print(f"{k}: tokens/s {r['tokens_per_s']}x, tokens per process CPU-s {r['tokens_per_process_cpu_s']}x, "
              f"peak RSS {r['peak_rss']}x")
    print(note)
    print(f"load average {load0} → {os.getloadavg()}; written to {path}", flush=True)
    return path


if __name__ == "__main__":
    main()
