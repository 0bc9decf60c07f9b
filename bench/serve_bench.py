"""Figures for issue 7: `danlu serve` throughput and latency with 8 concurrent clients against one
request at a time, adapter switch / load times, and `danlu export` sizes and logit errors.

    PYTHONPATH=src python bench/serve_bench.py [--model builtin:tiny] [--requests 64] [--threads 1]

Trains two small LoRA runs (a, b) on the builtin model, starts `danlu serve` on 127.0.0.1 with
both adapters, drives it with the openai client, exports run a in every format, and writes
bench/results/serve-<date>-cpu.json (with the machine's load average: the machine is shared)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QA = [("What is FlowDesk?", "A help-desk product for small teams."),
      ("How much is the Team plan?", "12 dollars per agent per month."),
      ("流云工单是什么？", "一款面向小团队的工单系统。"), ("Is there a free trial?", "Yes, 14 days, no card needed.")]


def train(model: str, root: Path, name: str, reverse: bool) -> Path:
    import yaml

    from danlu.config.load import load_config
    from danlu.train.runner import run_training

    folder = root / name
    folder.mkdir(parents=True)
    data = folder / "qa.jsonl"
    data.write_text("".join(json.dumps({"instruction": q, "input": "", "output": a[::-1] if reverse else a},
                                       ensure_ascii=False) + "\n" for q, a in QA * 2), encoding="utf-8")
    cfg = {"model": {"name_or_path": model}, "data": {"train": str(data)}, "method": {"name": "lora", "r": 8},
           "train": {"max_steps": 8, "batch_size": 8, "learning_rate": 2e-2, "max_length": 128, "report_to": [],
                     "save_steps": 1000}, "output_dir": str(folder / name)}  # served under the run's name
    (folder / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    run_training(load_config(folder / "cfg.yaml"))
    return folder / name


def start_server(run_a: Path, run_b: Path, threads: int):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "danlu", "serve", str(run_a), "--adapter", f"b={run_b}", "--port", str(port),
           "--threads", str(threads), "--max-batch", "16"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start")


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def load_run(url: str, jobs: list[tuple[str, str]], clients: int, max_tokens: int) -> dict:
    """`clients` threads share the job list; each sends its next request when the last is answered."""
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
    latencies, tokens, lock, it = [], [0], threading.Lock(), iter(jobs)

    def worker():
        while True:
            with lock:
                job = next(it, None)
            if job is None:
                return
            t0 = time.perf_counter()
            r = client.chat.completions.create(model=job[0], messages=[{"role": "user", "content": job[1]}],
                                               max_tokens=max_tokens, temperature=0)
            with lock:
                latencies.append(time.perf_counter() - t0)
                tokens[0] += r.usage.completion_tokens

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests": len(jobs), "wall_s": round(wall, 3),
            "requests_per_s": round(len(jobs) / wall, 3), "completion_tokens_per_s": round(tokens[0] / wall, 1),
            "p50_latency_s": round(percentile(latencies, 0.5), 4), "p95_latency_s": round(percentile(latencies, 0.95), 4)}


def switch_times(url: str, pairs: int = 30) -> dict:
    """Latency of a 1-token request to adapter a right after one to b, against right after one to a."""
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)

    def one(model):
        t0 = time.perf_counter()
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
        return 1000 * (time.perf_counter() - t0)

    same, switched = [], []
    for _ in range(pairs):
        one("a")
        same.append(one("a"))
        one("b")
        switched.append(one("a"))
    med_same, med_switched = statistics.median(same), statistics.median(switched)
    return {"request_after_same_adapter_ms": round(med_same, 2), "request_after_other_adapter_ms": round(med_switched, 2),
            "switch_cost_ms": round(med_switched - med_same, 2), "pairs": pairs}


def set_adapter_ms(run_a: Path, run_b: Path, repeats: int = 50) -> float:
    """The engine's switch for adapters PEFT cannot mix (DoRA): PeftModel.set_adapter."""
    import torch
    from peft import PeftModel

    from danlu.infer.load import load_for_inference

    model = load_for_inference(str(run_a), device="cpu", dtype=torch.float32).model
    assert isinstance(model, PeftModel)
    model.load_adapter(str(run_b / "adapter"), adapter_name="b")
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        model.set_adapter("b" if i % 2 == 0 else "default", inference_mode=True)
        times.append(1000 * (time.perf_counter() - t0))
    return round(statistics.median(times), 3)


def adapter_load(url: str, run_b: Path) -> dict:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    t0 = time.perf_counter()
    r = client.post("/adapters", body={"name": "c", "path": str(run_b)}, cast_to=object)
    wall = 1000 * (time.perf_counter() - t0)
    client.delete("/adapters/c", cast_to=object)
    return {"engine_load_ms": r["load_ms"], "http_round_trip_ms": round(wall, 2)}


def exports(run: Path, root: Path) -> dict:
    from danlu.export.run import ExportOptions, export_run

    out = {}
    for name, opts in [("merge_f16_gguf", ExportOptions(merge=True, gguf=True)),
                       ("int8", ExportOptions(quantize="int8")), ("int4", ExportOptions(quantize="int4")),
                       ("gguf_q8_0", ExportOptions(gguf=True, gguf_type="q8_0"))]:
        t0 = time.perf_counter()
        report = export_run(str(run), root / f"export-{name}", opts)
        report["seconds"] = round(time.perf_counter() - t0, 2)
        out[name] = report
    return out


def summary(ex: dict) -> dict:
    m = ex["merge_f16_gguf"]
    rows = {"adapter": {"bytes": m["adapter_bytes"]},
            "merged_fp32": {"bytes": m["merge"]["bytes"], "max_abs_vs_adapter": m["merge"]["merge_error"]["max_abs"]}}
    for kind in ("int8", "int4"):
        q = ex[kind]["quantize"]
        rows[kind] = {"bytes": q["bytes"], **_err(q["logit_error_vs_unquantised"])}
    for key, report in (("gguf_f16", m), ("gguf_q8_0", ex["gguf_q8_0"])):
        g = report["gguf"]
        rows[key] = {"bytes": g["bytes"], **_err(g["logit_error_dequantized"])}
    return rows


def _err(e: dict) -> dict:
    return {"max_abs": e["max_abs"], "max_rel": e["max_rel"], "mean_abs": e["mean_abs"], "top1_agree": e["top1_agree"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="builtin:tiny")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("DANLU_HOME", str(ROOT / ".pytest_cache" / "danlu_home"))
    import torch

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="danlu-bench-"))
    run_a, run_b = train(args.model, root, "a", False), train(args.model, root, "b", True)
    proc, url = start_server(run_a, run_b, args.threads)
    try:
        questions = [q for q, _ in QA]
        base_jobs = [(args.model, questions[i % len(questions)]) for i in range(args.requests)]
        mixed_jobs = [((args.model, "a", "b")[i % 3], questions[i % len(questions)]) for i in range(args.requests)]
        load_run(url, base_jobs[:8], 4, args.max_tokens)  # warm-up
        serving = {"one_at_a_time": load_run(url, base_jobs, 1, args.max_tokens),
                   "8_clients": load_run(url, base_jobs, 8, args.max_tokens),
                   "8_clients_mixed_adapters": load_run(url, mixed_jobs, 8, args.max_tokens)}
        serving["speedup_8_clients"] = round(serving["8_clients"]["requests_per_s"]
                                             / serving["one_at_a_time"]["requests_per_s"], 2)
        import httpx

        serving["engine"] = httpx.get(url + "/health").json()
        switching = {**switch_times(url), "adapter_load": adapter_load(url, run_b),
                     "set_adapter_ms_dora_path": set_adapter_ms(run_a, run_b)}
    finally:
        proc.terminate()
        proc.wait(30)
    ex = exports(run_a, root)
    result = {"date": datetime.date.today().isoformat(), "model": args.model, "device": "cpu",
              "torch_threads": args.threads, "cpus": os.cpu_count(),
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "note": "shared machine (2 cores, several engineers); load averages above show the contention",
              "workload": {"max_tokens": args.max_tokens, "temperature": 0, "requests": args.requests},
              "serving": serving, "adapter_switch": switching, "export": summary(ex),
              "export_seconds": {k: v["seconds"] for k, v in ex.items()}}
    out = Path(args.out or ROOT / "bench" / "results" / f"serve-{result['date']}-cpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
