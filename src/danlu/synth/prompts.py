"""What `danlu synth` asks the teacher, and how its replies are read back.

Self-instruct (Wang et al., 2023): show a few seed tasks, ask for new ones in the same style
and language, keep those that parse, are complete and are not (near) copies of earlier ones.
From documents: show one chunk of a document, ask for question/answer pairs answerable from
it alone. Replies are asked for as a JSON array and read tolerantly (code fences, text around
the array)."""

from __future__ import annotations

import json
import re

from danlu.chat.messages import RowError

TASKS_PROMPT = """You are creating training data for an AI assistant.
Here are examples of tasks, each with an instruction, an optional input and a good output:

{examples}

Write {n} new tasks. Make them diverse: different topics, verbs and formats, as realistic as the
examples, and do not copy them. Write each task in the language its examples use (for example
Chinese tasks in Chinese). Each output must fully and correctly complete its instruction.

Reply with only a JSON array of {n} objects with the keys "instruction", "input" (may be "")
and "output"."""

DOC_PROMPT = """You are creating training data for an AI assistant from a company document.

<document source="{source}">
{text}
</document>

Write {n} question-and-answer pairs a user might really ask about this document. Each question
must be answerable from the document alone, and each answer must be correct, complete and based
only on the document. Write in the language of the document.

Reply with only a JSON array of {n} objects with the keys "question" and "answer"."""


def format_examples(tasks: list[dict]) -> str:
    parts = []
    for i, t in enumerate(tasks, 1):
        lines = [f"Task {i}", f"instruction: {t['instruction']}"]
        if t.get("input"):
            lines.append(f"input: {t['input']}")
        lines.append(f"output: {t['output']}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def tasks_prompt(examples: list[dict], n: int) -> list[dict]:
    return [{"role": "user", "content": TASKS_PROMPT.format(examples=format_examples(examples), n=n)}]


def doc_prompt(text: str, source: str, n: int) -> list[dict]:
    return [{"role": "user", "content": DOC_PROMPT.format(text=text, source=source, n=n)}]


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


def parse_json_array(text: str) -> list:
    """The JSON array in a reply: the whole reply, a fenced block, or the outermost [...]."""
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for c in candidates:
        try:
            value = json.loads(c)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):  # {"tasks": [...]} and the like
            lists = [v for v in value.values() if isinstance(v, list)]
            value = lists[0] if len(lists) == 1 else [value]
        if isinstance(value, list):
            return value
    raise RowError("the reply holds no JSON array")


def _text(item: dict, key: str, *, required: bool = True, max_chars: int = 8000) -> str:
    value = item.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise RowError(f"{key!r} is not a string")
    value = value.strip()
    if required and not value:
        raise RowError(f"{key!r} is empty")
    if len(value) > max_chars:
        raise RowError(f"{key!r} is longer than {max_chars} characters")
    return value


def read_task(item) -> dict:
    """{"instruction", "input", "output"} from one element of a tasks reply."""
    if not isinstance(item, dict):
        raise RowError("a task is not a JSON object")
    task = {"instruction": _text(item, "instruction"), "input": _text(item, "input", required=False),
            "output": _text(item, "output")}
    if len(task["instruction"]) < 4:
        raise RowError("the instruction is too short")
    return task


def read_qa(item) -> dict:
    """{"instruction", "input", "output"} from one {"question", "answer"} of a documents reply."""
    if not isinstance(item, dict):
        raise RowError("a question/answer pair is not a JSON object")
    q = _text(item, "question") if "question" in item else _text(item, "instruction")
    a = _text(item, "answer") if "answer" in item else _text(item, "output")
    return {"instruction": q, "input": "", "output": a}
