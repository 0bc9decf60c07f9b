"""Multiple-choice benchmarks from local files in the MMLU, C-Eval or CMMLU layout, scored by
the log-likelihood of the options.

Layouts (one CSV per subject; the split is the folder or the file-name suffix):
  MMLU   dev/astronomy_dev.csv, test/astronomy_test.csv   no header: question,A,B,C,D,answer
  C-Eval dev/law_dev.csv, val/law_val.csv, test/law_test.csv
                                                         header id,question,A,B,C,D,answer[,explanation]
                                                         (its test split has no answers: val is used)
  CMMLU  dev/agronomy.csv, test/agronomy.csv             header ,Question,A,B,C,D,Answer
Scoring: `letter` (default, as the MMLU and C-Eval papers): the prompt lists the options and the
model's log-probability of each letter after "Answer:" decides; `text`: the log-probability of
each option's own text, per token. Few-shot examples come from the dev split."""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from danlu.errors import DataError

log = logging.getLogger(__name__)
SPLITS = ("dev", "val", "test")
LETTERS = "ABCDEFGHIJ"
SUFFIX = re.compile(r"_(dev|val|test)$")


@dataclass
class Question:
    subject: str
    question: str
    options: list[str]
    answer: str  # a letter, "" when the file gives none
    where: str = ""


@dataclass
class Benchmark:
    layout: str  # mmlu | ceval | cmmlu
    root: str
    splits: dict[str, list[Question]] = field(default_factory=dict)

    def eval_split(self, wanted: str | None = None) -> str:
        if wanted:
            if wanted not in self.splits:
                raise DataError(f"benchmark {self.root} has no {wanted!r} split (it has {', '.join(self.splits)})",
                                where="--bench-split")
            return wanted
        for name in ("test", "val", "dev"):
            if any(q.answer for q in self.splits.get(name, [])):
                return name
        raise DataError(f"no split of benchmark {self.root} gives answers", hint="check the answer column")


def _split_and_subject(path: Path) -> tuple[str | None, str]:
    stem = path.stem
    m = SUFFIX.search(stem)
    split = m.group(1) if m else (path.parent.name if path.parent.name in SPLITS else None)
    return split, SUFFIX.sub("", stem)


def _read_csv(path: Path) -> tuple[str, list[Question]]:
    _, subject = _split_and_subject(path)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return "mmlu", []
    head = [c.strip() for c in rows[0]]
    lower = [c.lower() for c in head]
    if "question" in lower:  # C-Eval / CMMLU: named columns (C-Eval's test split has no answer column)
        layout = "cmmlu" if "Question" in head else "ceval"
        q_col, a_col = lower.index("question"), lower.index("answer") if "answer" in lower else len(head)
        opt_cols = [i for i, c in enumerate(head) if len(c) == 1 and c.upper() in LETTERS]
        body, first_line = rows[1:], 2
    else:  # MMLU: question, options..., answer
        layout, q_col, a_col = "mmlu", 0, len(rows[0]) - 1
        opt_cols, body, first_line = list(range(1, len(rows[0]) - 1)), rows, 1
    questions = []
    for n, row in enumerate(body):
        where = f"{path}:{first_line + n}"
        if len(row) <= max([q_col, *opt_cols]):
            raise DataError(f"expected {max([q_col, *opt_cols]) + 1} columns, found {len(row)}", where=where)
        answer = row[a_col].strip().upper() if a_col < len(row) else ""
        if answer and answer not in list(LETTERS[:len(opt_cols)]):
            raise DataError(f"answer {answer!r} is not one of {', '.join(LETTERS[:len(opt_cols)])}", where=where,
                            hint="the answer column holds the letter of the correct option")
        questions.append(Question(subject, row[q_col].strip(), [row[i].strip() for i in opt_cols], answer, where))
    return layout, questions


def load_benchmark(root: str) -> Benchmark:
    """Every subject CSV under `root`, grouped by split."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"benchmark folder not found: {root}", where="--bench",
                        hint="give a folder in the MMLU, C-Eval or CMMLU layout (see docs/eval.md)")
    files = sorted(p for p in base.rglob("*.csv") if p.is_file())
    bench = Benchmark("mmlu", str(base))
    layouts = set()
    for path in files:
        split, _ = _split_and_subject(path)
        if split is None:
            log.warning("%s: no dev/val/test in its folder or name; skipped", path)
            continue
        layout, questions = _read_csv(path)
        layouts.add(layout)
        bench.splits.setdefault(split, []).extend(questions)
    if not bench.splits:
        raise DataError(f"no benchmark CSV files under {root}", where="--bench",
                        hint="expected dev/, val/ or test/ folders (or *_dev.csv / *_val.csv / *_test.csv files)")
    bench.layout = "cmmlu" if "cmmlu" in layouts else "ceval" if "ceval" in layouts else "mmlu"
    return bench


# ---- prompts ------------------------------------------------------------------------------------
def _chinese(bench: Benchmark, q: Question) -> bool:
    from danlu.eval.metrics import has_cjk

    return bench.layout in ("ceval", "cmmlu") or has_cjk(q.question)


def _block(q: Question, zh: bool, with_answer: bool) -> str:
    lines = [q.question] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(q.options)]
    tail = ("答案：" if zh else "Answer:") + ((q.answer if zh else f" {q.answer}") if with_answer else "")
    return "\n".join(lines + [tail])


def build_prompt(bench: Benchmark, q: Question, shots: list[Question]) -> str:
    zh = _chinese(bench, q)
    subject = q.subject.replace("_", " ")
    head = (f"以下是关于{subject}的单项选择题，请选出正确答案。" if zh
            else f"The following are multiple choice questions (with answers) about {subject}.")
    parts = [head] + [_block(s, zh, True) for s in shots] + [_block(q, zh, False)]
    return "\n\n".join(parts)


def _options(bench: Benchmark, q: Question, style: str) -> list[str]:
    zh = _chinese(bench, q)
    if style == "letter":
        return [LETTERS[i] if zh else f" {LETTERS[i]}" for i in range(len(q.options))]
    return [o if zh else f" {o}" for o in q.options]


# ---- scoring ------------------------------------------------------------------------------------
def score_benchmark(loaded, bench: Benchmark, *, split: str | None = None, shots: int = 0, style: str = "letter",
                    chat: bool = False, limit: int | None = None) -> tuple[dict, list[dict]]:
    """(summary, one record per question): accuracy overall (micro) and per subject."""
    from danlu.eval.likelihood import option_logprobs

    name = bench.eval_split(split)
    questions = [q for q in bench.splits[name] if q.answer][:limit]
    if not questions:
        raise DataError(f"the {name!r} split of benchmark {bench.root} gives no answers to score against",
                        where="--bench-split", hint="use a split with an answer column (C-Eval: val)")
    dev = bench.splits.get("dev", [])
    tok, records = loaded.tokenizer, []
    for q in questions:
        examples = [d for d in dev if d.subject == q.subject and d.answer and d is not q][:shots]
        prompt = build_prompt(bench, q, examples)
        if chat:
            from danlu.infer.generate import render_prompts

            prompt = render_prompts(tok, [[{"role": "user", "content": prompt}]])[0]
        context = tok(prompt, add_special_tokens=not chat)["input_ids"]
        conts = [tok(o, add_special_tokens=False)["input_ids"] for o in _options(bench, q, style)]
        scored = option_logprobs(loaded.model, context, conts)
        values = [lp / n if style == "text" else lp for lp, n in scored]
        pred = LETTERS[max(range(len(values)), key=values.__getitem__)]
        records.append({"where": q.where, "subject": q.subject, "answer": q.answer, "prediction": pred,
                        "correct": pred == q.answer, "logprobs": [round(v, 4) for v in values]})
    return summarise(bench, name, shots, style, records), records


def summarise(bench: Benchmark, split: str, shots: int, style: str, records: list[dict]) -> dict:
    subjects: dict[str, dict] = {}
    for r in records:
        s = subjects.setdefault(r["subject"], {"n": 0, "correct": 0})
        s["n"] += 1
        s["correct"] += int(r["correct"])
    for s in subjects.values():
        s["accuracy"] = 100.0 * s["correct"] / s["n"]
    correct = sum(int(r["correct"]) for r in records)
    return {"layout": bench.layout, "root": bench.root, "split": split, "shots": shots, "style": style,
            "n": len(records), "accuracy": 100.0 * correct / len(records) if records else 0.0,
            "subjects": dict(sorted(subjects.items()))}
