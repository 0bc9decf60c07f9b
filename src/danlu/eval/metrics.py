"""Metrics on generated answers, one function per metric in one registry (`METRICS`).

A metric takes the predictions, the references and `MetricInputs` (the eval items, a JSON
schema ...) and returns a `Score`: one corpus-level value plus, where it has one, a value per
sample (used to rank the biggest wins and losses). Rates and overlap scores are on a 0–100
scale, like sacrebleu's BLEU and chrF; loss and perplexity (likelihood.py) are raw.

Chinese text is tokenised as Chinese: BLEU uses sacrebleu's `zh` tokeniser when a reference
holds CJK characters, ROUGE segments words with jieba, token F1 counts each CJK character as a
token. Adding a metric is one function:

    @metric("my_metric", label="My metric", label_zh="我的指标",
            applies=lambda refs, inputs: ...)
    def my_metric(preds, refs, inputs) -> Score: ...
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from danlu.registry import Registry

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE)


@dataclass
class Score:
    value: float
    per_sample: list[float] | None = None
    detail: dict = field(default_factory=dict)


@dataclass
class MetricInputs:
    items: list | None = None  # EvalItem per sample (prompt messages, reference message, where)
    schema: dict | None = None  # JSON schema for schema_match (else each reference's own shape)


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[list[str], list[str], MetricInputs], Score]
    label: str
    label_zh: str
    higher_is_better: bool = True
    applies: Callable[[list[str], MetricInputs], bool] | None = None  # None: always chosen by auto


METRICS: Registry = Registry("metric")

# Figures that are not computed from answer text but share the table (names, labels, direction).
OTHER_FIGURES = {
    "loss": ("Loss (held-out)", "损失（验证集）", False),
    "perplexity": ("Perplexity", "困惑度", False),
    "judge_win_rate": ("Judge win rate vs base", "裁判胜率（对比基座）", True),
    "judge_score": ("Judge score (1-10)", "裁判评分（1-10）", True),
}


def metric(name: str, *, label: str, label_zh: str, higher_is_better: bool = True, applies=None):
    def deco(fn):
        METRICS.register(name)(Metric(name, fn, label, label_zh, higher_is_better, applies))
        return fn

    return deco


def describe(name: str) -> dict:
    """Labels and direction of a figure: {"label", "label_zh", "higher_is_better"}."""
    bench = name.split(":", 1)
    if name in METRICS:
        m = METRICS.get(name)
        return {"label": m.label, "label_zh": m.label_zh, "higher_is_better": m.higher_is_better}
    if name in OTHER_FIGURES:
        label, zh, up = OTHER_FIGURES[name]
        return {"label": label, "label_zh": zh, "higher_is_better": up}
    if len(bench) == 2:  # "bench:ceval" → benchmark accuracy
        return {"label": f"{bench[1]} accuracy", "label_zh": f"{bench[1]} 准确率", "higher_is_better": True}
    return {"label": name, "label_zh": name, "higher_is_better": not name.endswith(("loss", "perplexity"))}


def higher_is_better(name: str) -> bool:
    return describe(name.removeprefix("eval_"))["higher_is_better"]


def choose(refs: list[str], inputs: MetricInputs, names: list[str] | None = None) -> list[str]:
    """The metrics to compute: `names` if given (checked), else every metric that applies."""
    if names:
        for n in names:
            METRICS.get(n, where="metrics")  # an unknown name is an error with a suggestion
        return [METRICS.canonical(n) for n in names]
    return [name for name, m in METRICS if m.applies is None or m.applies(refs, inputs)]


def compute(names: list[str], preds: list[str], refs: list[str], inputs: MetricInputs | None = None) -> dict[str, Score]:
    inputs = inputs or MetricInputs()
    return {name: METRICS.get(name).fn(preds, refs, inputs) for name in names}


# ---- text helpers ---------------------------------------------------------------------------
def has_cjk(text: str) -> bool:
    return bool(CJK.search(text))


def normalise(text: str) -> str:
    """Whitespace collapsed and trimmed (case and punctuation kept)."""
    return " ".join(text.split())


def f1_tokens(text: str) -> list[str]:
    """Lower-cased words of letters/digits; each CJK character is a token; punctuation dropped."""
    return WORD.findall(unicodedata.normalize("NFKC", text).lower())


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# ---- exact match and token F1 -----------------------------------------------------------------
@metric("exact_match", label="Exact match", label_zh="精确匹配")
def exact_match(preds, refs, inputs) -> Score:
    per = [100.0 * (normalise(p) == normalise(r)) for p, r in zip(preds, refs)]
    return Score(_mean(per), per)


def token_f1_one(pred: str, ref: str) -> float:
    p, r = f1_tokens(pred), f1_tokens(ref)
    if not p or not r:
        return 100.0 * (p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 100.0 * 2 * precision * recall / (precision + recall)


@metric("token_f1", label="Token F1", label_zh="词元 F1")
def token_f1(preds, refs, inputs) -> Score:
    per = [token_f1_one(p, r) for p, r in zip(preds, refs)]
    return Score(_mean(per), per)


# ---- BLEU and chrF (sacrebleu) --------------------------------------------------------------
def bleu_tokenizer(refs: list[str]) -> str:
    return "zh" if any(has_cjk(r) for r in refs) else "13a"


@metric("bleu", label="BLEU", label_zh="BLEU")
def bleu(preds, refs, inputs) -> Score:
    from sacrebleu.metrics import BLEU

    tok = bleu_tokenizer(refs)
    scorer = BLEU(tokenize=tok)
    corpus = scorer.corpus_score(preds, [refs])
    sentence = BLEU(tokenize=tok, effective_order=True)
    per = [sentence.sentence_score(p, [r]).score for p, r in zip(preds, refs)]
    return Score(corpus.score, per, {"tokenize": tok, "signature": str(scorer.get_signature())})


@metric("chrf", label="chrF", label_zh="chrF")
def chrf(preds, refs, inputs) -> Score:
    from sacrebleu.metrics import CHRF

    scorer = CHRF()
    per = [scorer.sentence_score(p, [r]).score for p, r in zip(preds, refs)]
    return Score(scorer.corpus_score(preds, [refs]).score, per)


# ---- ROUGE (rouge-score; jieba words for Chinese) -------------------------------------------------
class RougeTokenizer:
    """rouge-score's own tokeniser for text without CJK; jieba words (lower-cased, punctuation
    dropped) for text with CJK, which rouge-score's tokeniser would delete."""

    def tokenize(self, text: str) -> list[str]:
        return list(_rouge_tokens(text))


@lru_cache(maxsize=4096)
def _rouge_tokens(text: str) -> tuple[str, ...]:
    if not has_cjk(text):
        from rouge_score import tokenize

        return tuple(tokenize.tokenize(text, None))
    return tuple(w.lower() for w in _jieba().lcut(text) if WORD.search(w))


@lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=RougeTokenizer())


def _rouge(kind: str, preds, refs) -> Score:
    scorer = _rouge_scorer()
    per = [100.0 * scorer.score(r, p)[kind].fmeasure for p, r in zip(preds, refs)]
    return Score(_mean(per), per)


@metric("rouge1", label="ROUGE-1", label_zh="ROUGE-1")
def rouge1(preds, refs, inputs) -> Score:
    return _rouge("rouge1", preds, refs)


@metric("rouge2", label="ROUGE-2", label_zh="ROUGE-2")
def rouge2(preds, refs, inputs) -> Score:
    return _rouge("rouge2", preds, refs)


@metric("rougeL", label="ROUGE-L", label_zh="ROUGE-L")
def rougeL(preds, refs, inputs) -> Score:  # noqa: N802 — the name everyone uses
    return _rouge("rougeL", preds, refs)


# ---- labels: accuracy and macro-F1 ----------------------------------------------------------------
def looks_like_labels(refs: list[str], inputs=None) -> bool:
    """Short one-line answers drawn from a small set (at most half as many as there are rows)."""
    if len(refs) < 4 or any(len(r) > 40 or "\n" in r.strip() for r in refs):
        return False
    return len({label_of(r) for r in refs}) <= len(refs) // 2


def label_of(text: str) -> str:
    """An answer read as a label: first line, trimmed, case-folded, trailing full stop removed."""
    lines = text.strip().splitlines()
    return (lines[0] if lines else "").strip().rstrip("。.").strip().casefold()


@metric("accuracy", label="Accuracy (labels)", label_zh="准确率（标签）", applies=looks_like_labels)
def accuracy(preds, refs, inputs) -> Score:
    per = [100.0 * (label_of(p) == label_of(r)) for p, r in zip(preds, refs)]
    return Score(_mean(per), per)


@metric("macro_f1", label="Macro-F1 (labels)", label_zh="宏平均 F1（标签）", applies=looks_like_labels)
def macro_f1(preds, refs, inputs) -> Score:
    """F1 per class, averaged over the classes that occur in the references (sklearn's
    f1_score(average="macro", labels=reference classes))."""
    p, r = [label_of(x) for x in preds], [label_of(x) for x in refs]
    per_class = {}
    for c in sorted(set(r)):
        tp = sum(1 for a, b in zip(p, r) if a == c and b == c)
        fp = sum(1 for a, b in zip(p, r) if a == c and b != c)
        fn = sum(1 for a, b in zip(p, r) if a != c and b == c)
        per_class[c] = 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return Score(_mean(list(per_class.values())), None, {"per_class": per_class})


# ---- structured output: JSON validity and schema match ------------------------------------------
FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


def parse_json(text: str):
    """The JSON object or array in `text` (a ```json fence is allowed), else raise ValueError."""
    body = text.strip()
    fenced = FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    value = json.loads(body)
    if not isinstance(value, (dict, list)):
        raise ValueError("not a JSON object or array")
    return value


def _parses(text: str) -> bool:
    try:
        parse_json(text)
        return True
    except ValueError:
        return False


def looks_like_json(refs: list[str], inputs=None) -> bool:
    return bool(refs) and sum(_parses(r) for r in refs) >= 0.8 * len(refs)


@metric("json_valid", label="Valid JSON", label_zh="JSON 合法率", applies=looks_like_json)
def json_valid(preds, refs, inputs) -> Score:
    per = [100.0 * _parses(p) for p in preds]
    return Score(_mean(per), per)


@metric("schema_match", label="Schema match", label_zh="结构匹配率", applies=looks_like_json)
def schema_match(preds, refs, inputs) -> Score:
    """Share of answers that are valid JSON of the right shape: the given JSON schema, else the
    reference's own shape (same keys at every level, same value types)."""
    from danlu.eval.jsonshape import matches_schema, same_shape

    per = []
    for p, r in zip(preds, refs):
        try:
            value = parse_json(p)
        except ValueError:
            per.append(0.0)
            continue
        if inputs.schema is not None:
            ok = matches_schema(value, inputs.schema)
        else:
            try:
                ok = same_shape(value, parse_json(r))
            except ValueError:
                ok = False
        per.append(100.0 * ok)
    return Score(_mean(per), per)


# ---- key facts stated -------------------------------------------------------------------------
def has_facts(refs: list[str], inputs=None) -> bool:
    items = (inputs.items if inputs else None) or []
    return any(getattr(i, "reference_message", {}).get("facts") for i in items)


CJK_SPACE = re.compile(r"\s+(?=[\u3400-\u9fff\uf900-\ufaff])|(?<=[\u3400-\u9fff\uf900-\ufaff])\s+")


def _fact_text(text: str) -> str:
    """NFKC, case-folded, spaces next to CJK characters dropped ("1 年" = "1年")."""
    return CJK_SPACE.sub("", unicodedata.normalize("NFKC", text).casefold())


@lru_cache(maxsize=4096)
def _fact_pattern(fact: str) -> re.Pattern:
    """`fact` found case- and width-insensitively, any run of spaces in it matching any spacing;
    a fact that starts or ends with an ASCII letter or digit must not continue a word or number
    there ("30" is not found in "300" or "2.30", "ten" not in "often"; "30" is in "30分钟")."""
    f = _fact_text(fact).strip()
    pattern = r"\s*".join(re.escape(part) for part in f.split())
    if re.match(r"[a-z0-9]", f):
        pattern = r"(?<![a-z0-9])(?<![0-9]\.)" + pattern
    if re.search(r"[a-z0-9]$", f):
        pattern += r"(?![a-z0-9])(?!\.[0-9])"
    return re.compile(pattern)


def states_facts(answer: str, facts: list) -> bool:
    """True when the answer states every fact; a fact given as a list is stated by any of its spellings."""
    text = _fact_text(answer)
    return all(any(_fact_pattern(alt).search(text) for alt in ([f] if isinstance(f, str) else f)) for f in facts)


@metric("facts", label="Key facts stated", label_zh="关键事实命中率", applies=has_facts)
def facts(preds, refs, inputs) -> Score:
    """Share of answers that state all the key facts of their row (`facts` in the eval data:
    ["$29", ["7", "seven"]]); rows without facts are not counted."""
    items = inputs.items or []
    per = [100.0 * states_facts(p, i.reference_message["facts"])
           for p, i in zip(preds, items) if i.reference_message.get("facts")]
    return Score(_mean(per), per if len(per) == len(preds) else None, {"answers_with_facts": len(per)})


# ---- tool calls --------------------------------------------------------------------------------
def has_tool_calls(refs: list[str], inputs=None) -> bool:
    items = (inputs.items if inputs else None) or []
    return any(getattr(i, "reference_message", {}).get("tool_calls") for i in items)


def _tool_scores(preds: list[str], inputs: MetricInputs, key: str) -> Score:
    """score_calls (danlu.chat.tools) on every answer whose reference makes tool calls: the answer's
    `<tool_call>` blocks parsed as `danlu serve` parses them, compared call by call in order.
    Answers whose reference is text are not counted (per-sample values only when all are calls)."""
    from danlu.chat.tools import parse_tool_calls, score_calls

    items = inputs.items or []
    per = [100.0 * score_calls(parse_tool_calls(p).tool_calls, i.reference_message["tool_calls"])[key]
           for p, i in zip(preds, items) if i.reference_message.get("tool_calls")]
    return Score(_mean(per), per if len(per) == len(preds) else None, {"answers_with_calls": len(per)})


@metric("tool_call_name", label="Tool call: right function", label_zh="工具调用：函数正确",
        applies=has_tool_calls)
def tool_call_name(preds, refs, inputs) -> Score:
    return _tool_scores(preds, inputs, "name")


@metric("tool_call_valid_json", label="Tool call: valid JSON arguments", label_zh="工具调用：参数为合法 JSON",
        applies=has_tool_calls)
def tool_call_valid_json(preds, refs, inputs) -> Score:
    return _tool_scores(preds, inputs, "valid_json")


@metric("tool_call_exact", label="Tool call: exact arguments", label_zh="工具调用：参数完全一致",
        applies=has_tool_calls)
def tool_call_exact(preds, refs, inputs) -> Score:
    return _tool_scores(preds, inputs, "exact")


# ---- speech recognition: word / character error rate (eval/wer.py; chosen by name) ----------------
@metric("wer", label="Word error rate", label_zh="词错误率（WER）", higher_is_better=False,
        applies=lambda refs, inputs: False)
def word_error_rate(preds, refs, inputs) -> Score:
    from danlu.eval.wer import error_rate, words

    value, per = error_rate(preds, refs, words)
    return Score(value, per)


@metric("cer", label="Character error rate", label_zh="字错误率（CER）", higher_is_better=False,
        applies=lambda refs, inputs: False)
def char_error_rate(preds, refs, inputs) -> Score:
    from danlu.eval.wer import chars, error_rate

    value, per = error_rate(preds, refs, chars)
    return Score(value, per)
