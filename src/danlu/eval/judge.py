"""LLM-as-judge through any OpenAI-compatible endpoint (OpenAI, DeepSeek, Qwen/DashScope, a
local vLLM or `danlu serve`), with the rubric from the config (`eval.judge.rubric`).

Pairwise (base vs tuned): every question is judged twice, once with the base answer shown first
and once with the tuned answer first. A judge that prefers whatever comes first then gives one
vote to each and the item is a tie, so position bias cancels instead of deciding the result.
Per item the two votes average to a score in [-1, 1] (tuned better > 0); the win rate is
(wins + ties / 2) / items. Single (no base): each answer gets a 1–10 score against the rubric."""

from __future__ import annotations

import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor

from pydantic import Field

from danlu.errors import DanluError, UserError
from danlu.schema_base import StrictModel

log = logging.getLogger(__name__)

DEFAULT_RUBRIC = (
    "Prefer the answer that is correct and complete for the question (agreeing with the reference answer "
    "when one is given), follows the instructions and the required format, and is clear and concise. "
    "Invented facts, wrong numbers and answers in the wrong language count heavily against an answer."
)


class JudgeConfig(StrictModel):
    base_url: str = Field(
        ..., description="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1."
    )
    model: str = Field(..., description="The judge model's name at that endpoint.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable that holds the API key (never the key itself)."
    )
    rubric: str = Field(DEFAULT_RUBRIC, description="What makes an answer better; shown to the judge.")
    show_reference: bool = Field(True, description="Show the reference answer to the judge.")
    temperature: float = Field(0.0, ge=0, description="Judge sampling temperature.")
    max_tokens: int = Field(256, ge=1, description="Longest judge reply.")
    concurrency: int = Field(4, ge=1, description="Judge requests in flight at once.")
    timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for one judge reply.")
    max_retries: int = Field(2, ge=0, description="Retries of a failed judge request.")


PAIR_SYSTEM = (
    "You are an impartial judge comparing two answers to the same question.\n"
    "Rubric:\n{rubric}\n\n"
    "Judge content only: ignore which answer comes first and how long it is. "
    'Reply with one JSON object and nothing else: {{"winner": "A" | "B" | "tie", "reason": "<one sentence>"}}'
)
SINGLE_SYSTEM = (
    "You are an impartial judge grading one answer to a question.\n"
    "Rubric:\n{rubric}\n\n"
    'Reply with one JSON object and nothing else: {{"score": <integer 1-10>, "reason": "<one sentence>"}}'
)


def _question_block(question: str, reference: str | None) -> str:
    text = f"[Question]\n{question}\n"
    if reference:
        text += f"\n[Reference answer]\n{reference}\n"
    return text


def pair_messages(rubric: str, question: str, reference: str | None, first: str, second: str) -> list[dict]:
    user = (_question_block(question, reference)
            + f"\n[Answer A]\n{first}\n\n[Answer B]\n{second}\n\nWhich answer is better: A, B, or tie?")
    return [{"role": "system", "content": PAIR_SYSTEM.format(rubric=rubric)}, {"role": "user", "content": user}]


def single_messages(rubric: str, question: str, reference: str | None, answer: str) -> list[dict]:
    user = _question_block(question, reference) + f"\n[Answer]\n{answer}\n\nScore this answer from 1 to 10."
    return [{"role": "system", "content": SINGLE_SYSTEM.format(rubric=rubric)}, {"role": "user", "content": user}]


def _json_object(text: str) -> dict | None:
    m = re.search(r"\{.*\}", text or "", re.DOTALL)
    if not m:
        return None
    try:
        value = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


LETTER_PATTERNS = (  # letters upper-case only: "a tie" is not answer A
    re.compile(r"[Ww]inner\W*(?:is\W*)?(?:[Aa]nswer\s+)?\(?([AB])\b"),
    re.compile(r"\b(?:[Aa]nswer\s+)?\(?([AB])\)?\s+is\s+(?:the\s+)?better"),
)
TIE = re.compile(r"\b(tie|draw|equally good)\b", re.IGNORECASE)


def parse_winner(text: str) -> str | None:
    """"A", "B", "tie", or None when the reply says none of them (a JSON object first, then prose)."""
    text = text or ""
    obj = _json_object(text)
    if obj and "winner" in obj:
        raw = str(obj["winner"]).strip()
        return raw.upper() if raw.upper() in ("A", "B") else "tie" if TIE.fullmatch(raw) else None
    for pattern in LETTER_PATTERNS:
        m = pattern.search(text)
        if m:
            return m.group(1)
    if TIE.search(text):
        return "tie"
    bare = text.strip().strip(".\"'").upper()
    return bare if bare in ("A", "B") else None


def parse_score(text: str) -> float | None:
    obj = _json_object(text)
    value = obj.get("score") if obj else None
    if value is None:
        m = re.search(r"score\W*(\d+(?:\.\d+)?)", text or "", re.IGNORECASE)
        value = m.group(1) if m else None
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if 1 <= score <= 10 else None


class Judge:
    def __init__(self, cfg):
        """`cfg`: a JudgeConfig."""
        try:
            from openai import OpenAI
        except ImportError:
            raise UserError("the LLM judge needs the openai package", hint="pip install 'danlu[eval]'") from None
        self.cfg = cfg
        key = os.environ.get(cfg.api_key_env) or "not-needed"
        self.client = OpenAI(base_url=cfg.base_url, api_key=key, timeout=cfg.timeout_s, max_retries=cfg.max_retries)

    def ask(self, messages: list[dict]) -> str:
        import openai

        try:
            reply = self.client.chat.completions.create(model=self.cfg.model, messages=messages,
                                                        temperature=self.cfg.temperature,
                                                        max_tokens=self.cfg.max_tokens)
        except openai.APIConnectionError as exc:
            raise DanluError(f"cannot reach the judge at {self.cfg.base_url}: {exc}. "
                             "Check eval.judge.base_url and that the server is running.") from None
        except openai.APIStatusError as exc:
            raise DanluError(f"the judge at {self.cfg.base_url} answered HTTP {exc.status_code}: "
                             f"{exc.message}. Check eval.judge.model and the API key in ${self.cfg.api_key_env}.") from None
        return reply.choices[0].message.content or ""

    def _map(self, fn, jobs: list):
        with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool:
            return list(pool.map(fn, jobs))

    def pairwise(self, items, base_answers: list[str], tuned_answers: list[str]) -> tuple[dict, list[dict]]:
        """Both orders for every item; returns (summary, one record per item)."""
        rubric, jobs = self.cfg.rubric, []
        for item, base, tuned in zip(items, base_answers, tuned_answers):
            ref = item.reference if self.cfg.show_reference else None
            jobs.append(pair_messages(rubric, item.question, ref, base, tuned))  # base first
            jobs.append(pair_messages(rubric, item.question, ref, tuned, base))  # tuned first
        replies = self._map(self.ask, jobs)
        records = [combine(parse_winner(replies[2 * i]), parse_winner(replies[2 * i + 1]))
                   for i in range(len(items))]
        return summarise_pairwise(records), records

    def single(self, items, answers: list[str]) -> tuple[dict, list[dict]]:
        jobs = [single_messages(self.cfg.rubric, it.question, it.reference if self.cfg.show_reference else None, a)
                for it, a in zip(items, answers)]
        scores = [parse_score(r) for r in self._map(self.ask, jobs)]
        valid = [s for s in scores if s is not None]
        summary = {"judge_score": sum(valid) / len(valid) if valid else None, "n": len(items),
                   "unparsed": len(scores) - len(valid), "model": self.cfg.model}
        return summary, [{"judge_score": s} for s in scores]


def combine(base_first: str | None, tuned_first: str | None) -> dict:
    """Two verdicts (letters as the judge saw them) → who won, from the tuned model's side."""
    side1 = {"A": "base", "B": "tuned"}.get(base_first or "", "tie")
    side2 = {"A": "tuned", "B": "base"}.get(tuned_first or "", "tie")
    value = {"tuned": 1, "base": -1, "tie": 0}
    score = (value[side1] + value[side2]) / 2
    return {"base_first": base_first, "tuned_first": tuned_first, "score": score,
            "winner": "tuned" if score > 0 else "base" if score < 0 else "tie",
            "consistent": side1 == side2, "unparsed": (base_first is None) + (tuned_first is None)}


def summarise_pairwise(records: list[dict]) -> dict:
    n = len(records)
    wins = sum(r["winner"] == "tuned" for r in records)
    losses = sum(r["winner"] == "base" for r in records)
    votes = [v for r in records for v in (r["base_first"], r["tuned_first"]) if v in ("A", "B")]
    return {
        "judge_win_rate": 100.0 * (wins + (n - wins - losses) / 2) / n if n else None,
        "wins": wins, "losses": losses, "ties": n - wins - losses, "n": n,
        "consistency": 100.0 * sum(r["consistent"] for r in records) / n if n else None,
        "first_position_rate": 100.0 * votes.count("A") / len(votes) if votes else None,
        "unparsed": sum(r["unparsed"] for r in records),
    }


def judge_config_from(path: str | None, overrides: dict):
    """The judge settings: `eval.judge` of a YAML file (a run's config.yaml or a file with an
    `eval:` or `judge:` section), then command-line overrides; None when no judge is set."""
    import yaml

    from danlu.errors import ConfigError

    data: dict = {}
    if path:
        try:
            raw = yaml.safe_load(open(path, encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the judge config: {exc}", where=path) from None
        data = dict(((raw.get("eval") or {}).get("judge") or raw.get("judge") or {}))
    data.update({k: v for k, v in overrides.items() if v is not None})
    if not data:
        return None
    if not data.get("base_url") or not data.get("model"):
        raise ConfigError("the judge needs base_url and model", where=f"{path or 'command line'}: eval.judge",
                          hint="set eval.judge.base_url and eval.judge.model, or --judge-url and --judge-model")
    try:
        return JudgeConfig.model_validate(data)
    except Exception as exc:  # pydantic ValidationError: name the key
        raise ConfigError(f"invalid judge settings: {exc}", where=f"{path or 'command line'}: eval.judge") from None
