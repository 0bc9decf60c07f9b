"""Quality at the same budget (issue 18 item 8): danlu vs the seed recipe (plain transformers +
peft + trl SFTTrainer as seed 003 writes it: danlu.bench.seed_recipe) on one real model, the
same data, epochs, LoRA rank/alpha/dropout/targets, learning rate, batch and max length.

    python bench/quality.py [--config examples/quickstart.yaml] [KEY=VALUE ...]

Each side trains in its own process (wall time and peak RSS of the process tree measured the same
way, danlu.bench.measure.run_measured); then both answer the held-out recall questions
(examples/data/support_recall.jsonl) greedily with the same max_new_tokens:
- danlu: `danlu eval RUN --compare base` (its chat template, its stop tokens);
- the seed: its own prompt format ("User: …\\nAssistant:"), PeftModel on the base as seed 003's
  section 4.4 does, generation until EOS, cut at a next "User:" turn.
Scored alike: key facts stated (`facts`), ROUGE-L, held-out loss (mean NLL per answer token,
answer + end token, each side in its own training format). One JSON → bench/results/."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECALL = ROOT / "examples" / "data" / "support_recall.jsonl"
MAX_NEW = 64


def seed_prompt(question: str) -> str:
    return f"User: {question}\nAssistant:"  # danlu.bench.runner.seed_text, the text the seed trained on


def seed_answers(model_dir: str, adapter: Path, rows: list[dict]) -> tuple[list[str], float]:
    """The seed-trained model's greedy answers and its held-out loss on the references."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), str(adapter)).eval()
    answers = []
    for i in range(0, len(rows), 26):
        enc = tok([seed_prompt(r["instruction"]) for r in rows[i:i + 26]], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=MAX_NEW, do_sample=False, pad_token_id=tok.eos_token_id)
        for row in out[:, enc["input_ids"].shape[1]:]:
            answers.append(tok.decode(row, skip_special_tokens=True).split("User:")[0].strip())
    nll, count = 0.0, 0
    for r in rows:
        prompt = tok(seed_prompt(r["instruction"]))["input_ids"]
        full = tok(f"{seed_prompt(r['instruction'])} {r['output']}{tok.eos_token}")["input_ids"]
        ids = torch.tensor([full])
        labels = ids.clone()
        labels[0, :len(prompt)] = -100
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss
        n = int(labels[0, 1:].ne(-100).sum())
        nll, count = nll + float(loss) * n, count + n
    return answers, nll / count


def score(answers: list[str], rows: list[dict]) -> dict:
    from danlu.eval.metrics import compute, states_facts

    facts = 100.0 * sum(states_facts(a, r["facts"]) for a, r in zip(answers, rows)) / len(rows)
    return {"facts": facts, "rougeL": compute(["rougeL"], answers, [r["output"] for r in rows])["rougeL"].value}


def run_danlu_side(config: Path, overrides: list[str], work: Path) -> dict:
    from danlu.bench.measure import python, run_measured
    from danlu.eval.run import EvalOptions, run_eval

    run = work / "danlu-run"
    code, rss, wall = run_measured([python(), "-m", "danlu", "train", str(config), f"output_dir={run}",
                                    "train.save_steps=null", *overrides, "--overwrite"],
                                   cwd=ROOT, log=work / "danlu.log")
    if code:
        sys.exit(f"danlu train failed (exit {code}); see {work / 'danlu.log'}")
    t0 = time.perf_counter()
    res = run_eval(str(run), EvalOptions(data=[str(RECALL)], compare="base", metrics=["facts", "rougeL"],
                                         max_new_tokens=MAX_NEW, batch_size=26, out_dir=str(work / "danlu-eval")))
    m = res.summary["metrics"]
    info = json.loads((run / "run_info.json").read_text())
    return {"wall_s": wall, "train_runtime_s": info.get("train_runtime_s"), "peak_rss_bytes": rss,
            "tuned": {k: m["model"][k] for k in ("facts", "rougeL", "loss")},
            "base": {k: m["base"][k] for k in ("facts", "rougeL", "loss")},
            "answers": [s["prediction"] for s in res.samples], "eval_s": time.perf_counter() - t0}


def run_seed_side(cfg, work: Path, rows: list[dict]) -> dict:
    from danlu.bench.runner import _model_path, run_seed, write_text_data

    text = work / "seed-text.jsonl"
    write_text_data(cfg, text)
    side = run_seed(cfg, text, work, float(cfg.train.learning_rate), adapter_dir=work / "seed-adapter")
    answers, loss = seed_answers(_model_path(cfg), work / "seed-adapter", rows)
    return {"wall_s": side["wall_s"], "train_runtime_s": side["runtime_s"], "peak_rss_bytes": side["peak_rss_bytes"],
            "precision": side.get("precision"), "gradient_checkpointing": side.get("gradient_checkpointing"),
            "tuned": {**score(answers, rows), "loss": loss}, "answers": answers}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "examples" / "quickstart.yaml"))
    ap.add_argument("--work", default=str(ROOT / "bench" / ".work" / "quality"))
    ap.add_argument("--name", default="quality")
    ap.add_argument("--side", choices=["both", "seed", "danlu", "combine"], default="both",
                    help="run one side only (figures to WORK/<side>.json; combine: none); "
                         "the result is written once both exist")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    from danlu.bench.runner import hardware_name, versions
    from danlu.config.load import load_config

    cfg = load_config(args.config, args.overrides)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(x) for x in RECALL.read_text(encoding="utf-8").splitlines() if x.strip()]
    if args.side in ("both", "seed"):
        (work / "seed.json").write_text(json.dumps(run_seed_side(cfg, work, rows), ensure_ascii=False))
    if args.side in ("both", "danlu"):
        ours = run_danlu_side(Path(args.config), args.overrides, work)
        (work / "danlu.json").write_text(json.dumps(ours, ensure_ascii=False))
    if not ((work / "seed.json").is_file() and (work / "danlu.json").is_file()):
        print(f"{args.side} side done; run the other side with the same --work to write the result")
        return
    seed, ours = (json.loads((work / f"{s}.json").read_text()) for s in ("seed", "danlu"))
    result = {"date": datetime.date.today().isoformat(), "hardware": hardware_name(), "versions": versions(),
              "config": cfg.to_yaml_dict(), "recall_set": str(RECALL.relative_to(ROOT)), "max_new_tokens": MAX_NEW,
              "seed_recipe": seed, "danlu": ours,
              "ratios": {"wall": round(ours["wall_s"] / seed["wall_s"], 3),
                         "peak_rss": round(ours["peak_rss_bytes"] / seed["peak_rss_bytes"], 3)}}
    out = ROOT / "bench" / "results" / f"{result['date']}-{result['hardware']}-{args.name}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("ratios",)} | {s: {k: v for k, v in result[s].items() if k != "answers"}
                                                          for s in ("seed_recipe", "danlu")}, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
