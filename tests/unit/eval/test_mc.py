"""Multiple-choice benchmarks: the shipped samples in MMLU / C-Eval / CMMLU layouts load with
the right splits, subjects and file:line; prompts follow the papers' format; option
log-probabilities equal a plain forward pass; scoring picks the most likely option."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from danlu.errors import DataError
from danlu.eval.likelihood import option_logprobs
from danlu.eval.mc import build_prompt, load_benchmark, score_benchmark

BENCH = Path(__file__).resolve().parents[3] / "examples" / "bench"


@pytest.mark.parametrize("folder,layout,split,n,subjects,first_where", [
    ("mmlu", "mmlu", "test", 6, {"everyday_science", "help_desk"}, "everyday_science_test.csv:1"),
    ("ceval", "ceval", "val", 5, {"customer_service", "office_software"}, "customer_service_val.csv:2"),
    ("cmmlu", "cmmlu", "test", 5, {"chinese_common_sense", "office_work"}, "chinese_common_sense.csv:2"),
])
def test_sample_layouts_load(folder, layout, split, n, subjects, first_where):
    bench = load_benchmark(str(BENCH / folder))
    assert bench.layout == layout
    assert bench.eval_split() == split  # C-Eval: its test split has no answers, so val is scored
    questions = bench.splits[split]
    assert len(questions) == n and {q.subject for q in questions} == subjects
    assert questions[0].where.endswith(first_where)
    assert all(len(q.options) == 4 and q.answer in "ABCD" for q in questions)
    assert bench.splits["dev"], "few-shot examples come from dev"


def test_prompts_follow_the_benchmark_format():
    en = load_benchmark(str(BENCH / "mmlu"))
    q, shot = en.splits["test"][0], en.splits["dev"][0]
    prompt = build_prompt(en, q, [shot])
    assert prompt.startswith("The following are multiple choice questions (with answers) about everyday science.")
    assert f"{shot.question}\nA. {shot.options[0]}" in prompt and f"Answer: {shot.answer}\n\n" in prompt
    assert prompt.endswith(f"D. {q.options[3]}\nAnswer:")
    zh = load_benchmark(str(BENCH / "cmmlu"))
    prompt = build_prompt(zh, zh.splits["test"][0], [])
    assert prompt.startswith("以下是关于chinese common sense的单项选择题") and prompt.endswith("答案：")


def test_bad_rows_name_file_and_line(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "law_val.csv").write_text("id,question,A,B,C,D,answer\n0,q,a,b,c,d,B\n1,q2,a,b,c,d,E\n",
                                                  encoding="utf-8")
    with pytest.raises(DataError, match=r"law_val.csv:3: answer 'E' is not one of A, B, C, D"):
        load_benchmark(str(tmp_path))
    with pytest.raises(DataError, match="benchmark folder not found"):
        load_benchmark(str(tmp_path / "missing"))


def test_a_split_without_answers_is_refused():
    bench = load_benchmark(str(BENCH / "ceval"))
    with pytest.raises(DataError, match="gives no answers"):
        score_benchmark(SimpleNamespace(model=None, tokenizer=None), bench, split="test")


@pytest.fixture(scope="module")
def tiny():
    from danlu.models.load import load_model, load_tokenizer

    return load_model("builtin:tiny", dtype=torch.float32).eval(), load_tokenizer("builtin:tiny")


def test_option_logprobs_equal_a_plain_forward_pass(tiny):
    model, tok = tiny
    context = tok("Question: 2 + 2 = ?\nAnswer:")["input_ids"]
    letters = [tok(f" {x}", add_special_tokens=False)["input_ids"] for x in "ABCD"]
    texts = [tok(t, add_special_tokens=False)["input_ids"] for t in (" four", " twenty two", " 4")]
    with torch.no_grad():
        def reference(option):
            logp = torch.log_softmax(model(torch.tensor([context + option])).logits[0].float(), -1)
            return sum(float(logp[len(context) + k - 1, t]) for k, t in enumerate(option))

        assert all(len(x) == 1 for x in letters)  # the one-forward fast path
        for (got, n), option in zip(option_logprobs(model, context, letters) + option_logprobs(model, context, texts),
                                    letters + texts):
            assert n == len(option) and got == pytest.approx(reference(option), abs=1e-4)


class PrefersB(torch.nn.Module):
    """A 'model' whose next token is always the letter B (with or without a leading space)."""

    def __init__(self, tok, vocab: int):
        super().__init__()
        self.ids = {tok(x, add_special_tokens=False)["input_ids"][0] for x in ("B", " B")}
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., list(self.ids)] = 10.0
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize("folder", ["mmlu", "ceval", "cmmlu"])
def test_scoring_picks_the_most_likely_letter(tiny, folder):
    _, tok = tiny
    bench = load_benchmark(str(BENCH / folder))
    loaded = SimpleNamespace(model=PrefersB(tok, len(tok)), tokenizer=tok)
    summary, records = score_benchmark(loaded, bench, shots=1)
    questions = bench.splits[bench.eval_split()]
    assert [r["prediction"] for r in records] == ["B"] * len(questions)
    assert summary["accuracy"] == pytest.approx(100 * sum(q.answer == "B" for q in questions) / len(questions))
    for subject, s in summary["subjects"].items():
        qs = [q for q in questions if q.subject == subject]
        assert s["n"] == len(qs) and s["accuracy"] == pytest.approx(100 * sum(q.answer == "B" for q in qs) / len(qs))
