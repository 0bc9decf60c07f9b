"""`danlu eval`: answer the eval questions with the model (and the base it is compared with),
score the answers, the held-out loss and any benchmarks, ask the judge, and write

  samples.jsonl        one row per question: prompt, reference, both answers, per-sample scores
  metrics.json         every figure for the model and the base, and the deltas
  bench_samples.jsonl  one row per benchmark question and model (with --bench)
  report.html          one self-contained page (report.py)
"""

from __future__ import annotations

import datetime
import gc
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import danlu
from danlu.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class EvalOptions:
    data: list[str] = field(default_factory=list)
    compare: str | None = None
    out_dir: str | None = None
    fmt: str = "auto"
    system: str | None = None
    limit: int | None = None
    metrics: list[str] | None = None  # None: every metric that applies to the references
    schema: str | None = None  # JSON schema file for schema_match
    max_new_tokens: int = 256
    batch_size: int = 16
    dtype: str = "auto"  # auto | fp32 | bf16 | fp16: weights and compute of the models evaluated
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    loss: bool = True
    max_length: int = 2048
    bench: list[str] = field(default_factory=list)
    bench_split: str | None = None
    shots: int = 0
    mc_style: str = "letter"
    mc_chat: bool = False
    judge: object | None = None  # eval.judge.JudgeConfig
    harness_tasks: list[str] = field(default_factory=list)
    rank_by: str | None = None


@dataclass
class ModelEval:
    source: str
    answers: list[dict] = field(default_factory=list)
    scores: dict = field(default_factory=dict)  # metric name → metrics.Score
    figures: dict[str, float] = field(default_factory=dict)  # every number for the table
    per_sample_loss: list[float] = field(default_factory=list)
    bench: dict[str, dict] = field(default_factory=dict)
    bench_records: dict[str, list[dict]] = field(default_factory=dict)
    harness: dict = field(default_factory=dict)
    run_dir: str | None = None  # the training run (for its loss curves), if any


@dataclass
class EvalResult:
    out_dir: Path
    summary: dict
    samples: list[dict]


def run_dir_of(target: str) -> Path | None:
    """The training run directory behind a target (a run dir or its adapter/ or model/)."""
    p = Path(target)
    for d in (p, p.parent):
        if (d / "metrics.jsonl").is_file() or (d / "config.yaml").is_file() and (d / "run_info.json").is_file():
            return d
    return None


def default_out_dir(target: str) -> Path:
    run = run_dir_of(target)
    if run is not None:
        return run / "eval"
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in target.replace("builtin:", "builtin-"))
    return Path("runs") / f"eval-{slug.strip('-.')}"


def resolve_compare(target: str, compare: str | None) -> str | None:
    """`--compare base` (when no path of that name exists) means the base model of the run."""
    if compare != "base" or Path(compare).exists():
        return compare
    from danlu.infer.load import find_artefact

    artefact = find_artefact(target)
    info = json.loads((artefact / "danlu.json").read_text(encoding="utf-8")) if artefact else {}
    if not info.get("base_model"):
        raise UserError(f"--compare base: {target} is not a danlu run, so it has no recorded base model",
                        where="--compare", hint="give the base model explicitly: --compare Qwen/Qwen2.5-0.5B-Instruct")
    return info["base_model"]


def evaluate_model(source: str, items, names: list[str], inputs, opts: EvalOptions) -> ModelEval:
    """Everything measured on one model; the model is freed before returning."""
    from danlu.eval.generate import generate_answers
    from danlu.eval.metrics import compute
    from danlu.infer.load import load_for_inference

    log.info("evaluating %s", source)
    result = ModelEval(source)
    run = run_dir_of(source)
    result.run_dir = str(run) if run else None
    loaded = load_for_inference(source, dtype=_torch_dtype(opts.dtype))
    if items:
        result.answers = generate_answers(loaded, items, max_new_tokens=opts.max_new_tokens,
                                          batch_size=opts.batch_size, temperature=opts.temperature,
                                          top_p=opts.top_p, seed=opts.seed, desc=f"answers of {source}")
        preds, refs = [a["text"] for a in result.answers], [it.reference for it in items]
        result.scores = compute(names, preds, refs, inputs)
        result.figures = {name: s.value for name, s in result.scores.items()}
        if opts.loss:
            _held_out(loaded, items, opts, result)
    _benchmarks(loaded, opts, result)
    if opts.harness_tasks:
        from danlu.eval.harness import run_harness

        result.harness = run_harness(loaded, opts.harness_tasks, num_fewshot=opts.shots, limit=opts.limit,
                                     batch_size=opts.batch_size)
    del loaded
    gc.collect()
    return result


def _torch_dtype(name: str):
    """None for auto (load_for_inference decides: bf16 on a GPU, fp32 on a CPU)."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}.get(name)


def _held_out(loaded, items, opts: EvalOptions, result: ModelEval) -> None:
    from danlu.eval.likelihood import held_out_loss

    held = held_out_loss(loaded, [it.conversation() for it in items], max_length=opts.max_length,
                         batch_size=max(1, opts.batch_size // 2))
    result.figures.update(loss=held.loss, perplexity=held.perplexity)
    result.per_sample_loss = held.per_sample


def _benchmarks(loaded, opts: EvalOptions, result: ModelEval) -> None:
    from danlu.eval.mc import load_benchmark, score_benchmark

    for root in opts.bench:
        bench = load_benchmark(root)
        name = bench.layout if bench.layout not in result.bench else Path(root).name
        summary, records = score_benchmark(loaded, bench, split=opts.bench_split, shots=opts.shots,
                                           style=opts.mc_style, chat=opts.mc_chat, limit=opts.limit)
        result.bench[name], result.bench_records[name] = summary, records
        result.figures[f"bench:{name}"] = summary["accuracy"]


def _inputs(opts: EvalOptions, items):
    from danlu.eval.metrics import MetricInputs

    schema = None
    if opts.schema:
        try:
            schema = json.loads(Path(opts.schema).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read the JSON schema: {exc}", where=opts.schema) from None
    return MetricInputs(items=items, schema=schema)


def run_eval(target: str, opts: EvalOptions) -> EvalResult:
    from danlu.eval.generate import read_items
    from danlu.eval.metrics import choose

    if not opts.data and not opts.bench and not opts.harness_tasks:
        raise UserError("nothing to evaluate", where="danlu eval",
                        hint="give --data FILE (questions with reference answers), --bench FOLDER, or --harness TASKS")
    out = Path(opts.out_dir) if opts.out_dir else default_out_dir(target)
    items = read_items(opts.data, fmt=opts.fmt, system=opts.system, limit=opts.limit) if opts.data else []
    inputs = _inputs(opts, items)
    names = choose([it.reference for it in items], inputs, opts.metrics) if items else []
    if opts.rank_by and opts.rank_by not in names + ["loss"]:
        raise UserError(f"--rank-by {opts.rank_by!r} is not a computed per-sample metric", where="--rank-by",
                        hint=f"choose one of: {', '.join(names + ['loss'])}")
    compare = resolve_compare(target, opts.compare)
    model = evaluate_model(target, items, names, inputs, opts)
    base = evaluate_model(compare, items, names, inputs, opts) if compare else None
    judge = _judge(opts, items, model, base)
    samples = build_samples(items, model, base, judge[1] if judge else None)
    summary = build_summary(target, compare, opts, items, names, model, base, judge[0] if judge else None)
    write_outputs(out, summary, samples, model, base, thumbnails(items))
    return EvalResult(out, summary, samples)


def _judge(opts: EvalOptions, items, model: ModelEval, base: ModelEval | None):
    if opts.judge is None or not items:
        return None
    from danlu.eval.judge import Judge

    judge = Judge(opts.judge)
    tuned = [a["text"] for a in model.answers]
    if base is None:
        summary, records = judge.single(items, tuned)
        model.figures["judge_score"] = summary["judge_score"]
    else:
        summary, records = judge.pairwise(items, [a["text"] for a in base.answers], tuned)
        model.figures["judge_win_rate"] = summary["judge_win_rate"]
    summary.update(mode="single" if base is None else "pairwise", model=opts.judge.model,
                   base_url=opts.judge.base_url, rubric=opts.judge.rubric)
    return summary, records


def _per_sample(m: ModelEval, i: int) -> dict:
    scores = {n: round(s.per_sample[i], 4) for n, s in m.scores.items() if s.per_sample is not None}
    if m.per_sample_loss:
        scores["loss"] = round(m.per_sample_loss[i], 4)
    return scores


def build_samples(items, model: ModelEval, base: ModelEval | None, judge_records) -> list[dict]:
    rows = []
    for i, it in enumerate(items):
        a = model.answers[i]
        row = {"index": i, "where": it.where, "prompt": it.question, "messages": it.prompt,
               "reference": it.reference, "prediction": a["text"], "finish_reason": a["finish_reason"],
               "completion_tokens": a["completion_tokens"], "scores": _per_sample(model, i)}
        if it.images:
            row["images"] = [ref.label for ref in it.images]
        if base is not None:
            b = base.answers[i]
            row.update(base_prediction=b["text"], base_finish_reason=b["finish_reason"],
                       base_completion_tokens=b["completion_tokens"], base_scores=_per_sample(base, i))
        if judge_records:
            row["judge"] = judge_records[i]
        rows.append(row)
    return rows


def build_summary(target, compare, opts: EvalOptions, items, names, model: ModelEval, base, judge) -> dict:
    from danlu.eval.metrics import describe

    figures = list(model.figures) + [k for k in (base.figures if base else {}) if k not in model.figures]
    delta = {}
    if base is not None:
        for k in figures:
            a, b = model.figures.get(k), base.figures.get(k)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                delta[k] = a - b
    return {
        "danlu_version": danlu.__version__,
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "model": target, "base": compare, "data": opts.data, "n_samples": len(items),
        "generation": {"max_new_tokens": opts.max_new_tokens, "temperature": opts.temperature,
                       "top_p": opts.top_p, "seed": opts.seed, "batch_size": opts.batch_size,
                       "dtype": opts.dtype},
        "metric_names": names,
        "metrics": {"model": model.figures, "base": base.figures if base else None, "delta": delta},
        "labels": {k: describe(k) for k in figures},
        "details": {n: s.detail for n, s in model.scores.items() if s.detail},
        "judge": judge,
        "bench": {"model": model.bench, "base": base.bench if base else None},
        "harness": {"model": model.harness, "base": base.harness if base else None},
        "rank_by": opts.rank_by or next((n for n in ("token_f1", "rougeL", "chrf", "exact_match") if n in names), None),
        "run_dir": model.run_dir,
    }


def thumbnails(items) -> dict[int, list[str]]:
    """Small PNGs (base64) of each question's images, by sample index, for report.html."""
    from danlu.eval.report import thumbnail

    return {i: [thumbnail(ref) for ref in it.images] for i, it in enumerate(items) if it.images}


def write_outputs(out: Path, summary: dict, samples: list[dict], model: ModelEval, base,
                  thumbs: dict[int, list[str]] | None = None) -> None:
    from danlu.eval.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "samples.jsonl", "w", encoding="utf-8") as fh:
        for row in samples:
            fh.write(json.dumps(finite(row), ensure_ascii=False) + "\n")
    (out / "metrics.json").write_text(json.dumps(finite(summary), ensure_ascii=False, indent=2), encoding="utf-8")
    if model.bench_records:
        with open(out / "bench_samples.jsonl", "w", encoding="utf-8") as fh:
            for who, m in (("model", model), ("base", base)):
                for name, records in (m.bench_records.items() if m else []):
                    for r in records:
                        fh.write(json.dumps({"model": who, "bench": name, **r}, ensure_ascii=False) + "\n")
    write_report(out / "report.html", finite(summary), samples, thumbs)


def finite(value):
    """NaN and infinity become null, so the files are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value
