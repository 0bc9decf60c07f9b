"""Preference (DPO) and unpaired (KTO) rows in the layouts LLaMA-Factory and TRL use, read into
`Preference` / `Unpaired` samples for `danlu data convert`.

The FORMATS registry is the first choice for every row; these readers serve only rows that no
registered preference or KTO format recognises, so formats registered under data/formats/ take
over as soon as they exist. Layouts:

- TRL explicit prompt: {"prompt": str | messages, "chosen": str | messages, "rejected": ...}
- TRL implicit prompt: {"chosen": messages, "rejected": messages} (the shared prefix is the prompt)
- LLaMA-Factory sharegpt: {"conversations": [...], "chosen": {"from", "value"}, "rejected": {...}}
  (also with "messages" and role/content turns)
- LLaMA-Factory alpaca: {"instruction", "input", "chosen": str, "rejected": str}
- KTO: {"prompt", "completion", "label": bool} or {"messages": [..., assistant], "label": bool}"""

from __future__ import annotations

from danlu.chat.messages import Preference, RowError, Unpaired
from danlu.data.formats.base import check_roles
from danlu.data.formats.messages import parse_messages
from danlu.data.formats.sharegpt import sharegpt_messages


def _turns(value, key: str) -> list[dict]:
    """A list of turns in either layout (role/content or from/value)."""
    if isinstance(value, list) and value and isinstance(value[0], dict) and "from" in value[0]:
        return sharegpt_messages(value)
    return parse_messages(value, key)


def _answer(value, key: str) -> list[dict]:
    """An answer given as a string, one turn object, or a list of turns → assistant messages."""
    if isinstance(value, str):
        if not value.strip():
            raise RowError(f"field {key!r} is empty")
        return [{"role": "assistant", "content": value}]
    if isinstance(value, dict):
        value = [value]
    msgs = _turns(value, key)
    if not msgs or any(m["role"] != "assistant" for m in msgs):
        raise RowError(f"field {key!r} must hold assistant turns")
    if not any((m.get("content") or "").strip() or m.get("tool_calls") for m in msgs):
        raise RowError(f"empty assistant turn (field {key!r})")
    return msgs


def _prompt(row: dict) -> list[dict]:
    """The prompt of a preference/KTO row as messages ending with a user turn."""
    if "prompt" in row:
        p = row["prompt"]
        msgs = [{"role": "user", "content": p}] if isinstance(p, str) else _turns(p, "prompt")
    elif "conversations" in row or "messages" in row:
        key = "conversations" if "conversations" in row else "messages"
        msgs = _turns(row[key], key)
    elif "instruction" in row:
        text = "\n".join(x for x in (row.get("instruction"), row.get("input")) if isinstance(x, str) and x)
        msgs = [{"role": "user", "content": text}]
    else:
        raise RowError("no prompt: expected 'prompt', 'conversations', 'messages' or 'instruction'")
    system = row.get("system")
    if isinstance(system, str) and system.strip() and not (msgs and msgs[0]["role"] == "system"):
        msgs.insert(0, {"role": "system", "content": system})
    check_roles(msgs, require_assistant_last=False)
    if msgs[-1]["role"] != "user":
        raise RowError("the prompt must end with a user turn")
    return msgs


def is_preference(row: dict) -> bool:
    return "chosen" in row and "rejected" in row


def is_unpaired(row: dict) -> bool:
    return isinstance(row.get("label", row.get("kto_tag")), bool) and (
        "completion" in row or "messages" in row or "conversations" in row)


def read_preference(row: dict) -> Preference:
    chosen, rejected = row["chosen"], row["rejected"]
    has_prompt = any(k in row for k in ("prompt", "conversations", "messages", "instruction"))
    if not has_prompt and isinstance(chosen, list) and isinstance(rejected, list):
        c, r = _turns(chosen, "chosen"), _turns(rejected, "rejected")
        k = 0
        while k < min(len(c), len(r)) and c[k] == r[k]:
            k += 1
        if k == 0 or c[k - 1]["role"] != "user":
            raise RowError("chosen and rejected share no prompt ending with a user turn")
        check_roles(c[:k], require_assistant_last=False)
        return Preference(c[:k], _answer(c[k:], "chosen"), _answer(r[k:], "rejected"))
    return Preference(_prompt(row), _answer(chosen, "chosen"), _answer(rejected, "rejected"))


def read_unpaired(row: dict) -> Unpaired:
    label = row.get("label", row.get("kto_tag"))
    if "completion" in row:
        return Unpaired(_prompt(row), _answer(row["completion"], "completion"), label)
    key = "messages" if "messages" in row else "conversations"
    msgs = _turns(row[key], key)
    k = len(msgs)
    while k and msgs[k - 1]["role"] == "assistant":
        k -= 1
    if k == len(msgs):
        raise RowError(f"field {key!r} does not end with an assistant turn")
    check_roles(msgs[:k], require_assistant_last=False)
    return Unpaired(msgs[:k], _answer(msgs[k:], key), label)


FALLBACK_READERS = {"preference": (is_preference, read_preference), "kto": (is_unpaired, read_unpaired)}
