"""One LLaMA-Factory row → one danlu sample (LLaMA-Factory's converter.py, with its checks
reported as row errors). Which sample a row becomes is decided by the entry, as there:
  ranking: true           → Preference (prompt, chosen, rejected)
  a kto_tag column        → Unpaired (prompt, completion, label)
  alpaca without response → Text (the prompt; continued pretraining, as c4_demo)
  otherwise               → Conversation
A stage that reads prompts only (ppo, grpo ...) gets each row's prompt."""

from __future__ import annotations

from danlu.chat.messages import Conversation, Preference, Prompt, RowError, Text, Unpaired
from danlu.chat.tools import normalise_tools
from danlu.data.formats.base import (FormatOptions, check_roles, describe_value, fill_placeholders, finish_messages,
                                    row_images)
from danlu.data.formats.messages import parse_messages
from danlu.data.formats.sharegpt import tool_call_message
from danlu.errors import DataError

# what each kind of entry can feed: its own kind, or the prompts of its rows
FEEDS = {"conversation": ("conversation", "prompt"), "text": ("text", "prompt"),
         "preference": ("preference", "prompt"), "unpaired": ("unpaired",)}
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def entry_kind(entry) -> str:
    if entry.ranking:
        return "preference"
    if entry.columns.get("kto_tag"):
        return "unpaired"
    if entry.formatting == "alpaca" and not entry.columns.get("response"):
        return "text"
    return "conversation"


def make_converter(entry, opts: FormatOptions, kinds: tuple[str, ...]):
    """A function row → sample for this entry; a DataError (exit 2) when the stage cannot use it."""
    kind = entry.kind
    if not any(k in kinds for k in FEEDS[kind]):
        raise DataError(f"dataset {entry.name!r} holds {kind} rows; this stage reads {' or '.join(kinds)} rows",
                        where=entry.source,
                        hint={"preference": "ranking data trains stage dpo, orpo, reward (or kto)",
                              "unpaired": "KTO data (kto_tag) trains stage kto"}.get(kind, "pick a dataset for this stage"))
    parse = {"alpaca": _alpaca, "sharegpt": _sharegpt, "openai": _openai}[entry.formatting]

    def convert(row: dict):
        sample = _build(entry, kind, *parse(entry, row), row, opts)
        return sample if _kind_of(sample) in kinds else _as_prompt(sample)

    return convert


def _kind_of(sample) -> str:
    return {Conversation: "conversation", Text: "text", Preference: "preference", Unpaired: "unpaired"}[type(sample)]


def _as_prompt(sample) -> Prompt:
    if isinstance(sample, Text):
        return Prompt([{"role": "user", "content": sample.text}])
    messages = sample.prompt if isinstance(sample, Preference) else sample.messages[:-1]
    if messages[-1]["role"] != "user":
        raise RowError(f"the prompt ends with a {messages[-1]['role']} turn; a prompt must end with a user turn")
    return Prompt(messages, images=list(getattr(sample, "images", [])))


def _col(entry, row: dict, name: str):
    key = entry.columns.get(name)
    return row.get(key) if key else None


def _string(value, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"{what} must be a string, got {describe_value(value)}")
    return value


# --- layouts: row → (prompt messages, answer messages, system) --------------------------------


def _alpaca(entry, row: dict):
    prompt = []
    history = _col(entry, row, "history")
    if isinstance(history, list):
        for n, pair in enumerate(history):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise RowError(f"history item {n + 1} must be [question, answer]")
            prompt += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    parts = [_string(_col(entry, row, c), f"field {entry.columns[c]!r}")
             for c in ("prompt", "query") if entry.columns.get(c)]
    prompt.append({"role": "user", "content": "\n".join(p for p in parts if p)})
    answers = []
    for c in ("chosen", "rejected") if entry.ranking else ("response",):
        value = _col(entry, row, c)
        if entry.columns.get(c) and value is not None:
            answers.append({"role": "assistant", "content": _string(value, f"field {entry.columns[c]!r}")})
    return prompt, answers, _col(entry, row, "system")


def _turns(entry, row: dict) -> tuple[list, object]:
    key = entry.columns.get("messages")
    turns = row.get(key) if key else None
    if not isinstance(turns, list):
        raise RowError(f"field {key!r} must be a list of turns" if key in row else f"missing field {key!r}")
    tags, system = entry.tags, _col(entry, row, "system")
    role, content = tags["role_tag"], tags["content_tag"]
    if not all(isinstance(t, dict) for t in turns):
        raise RowError(f"every item of {key!r} must be an object with {role!r} and {content!r}")
    if tags["system_tag"] and turns and turns[0].get(role) == tags["system_tag"]:
        system, turns = turns[0].get(content), turns[1:]
    return turns, system


def _message(entry, turn: dict, where: str) -> dict:
    tags = entry.tags
    tag, value = turn.get(tags["role_tag"]), turn.get(tags["content_tag"])
    if tag == tags["function_tag"]:
        return tool_call_message(value, where)
    role = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant", tags["observation_tag"]: "tool"}.get(tag)
    return {"role": role, "content": _string(value, f"{where} {tags['content_tag']!r}")}


def _sharegpt(entry, row: dict):
    turns, system = _turns(entry, row)
    tags = entry.tags
    accept = ((tags["user_tag"], tags["observation_tag"]), (tags["assistant_tag"], tags["function_tag"]))
    messages = []
    for i, turn in enumerate(turns):
        tag = turn.get(tags["role_tag"])
        if tag is None or tag not in accept[i % 2]:
            want = " or ".join(repr(t) for t in accept[i % 2] if t)
            raise RowError(f"wrong role order: turn {i + 1} has role {tag!r} where {want} must come (turns "
                           "alternate: user/observation, then assistant/function_call)")
        messages.append(_message(entry, turn, f"turn {i + 1}"))
    return _split(entry, row, messages, system)


def _openai(entry, row: dict):
    """LLaMA-Factory's `openai` formatting: role/content messages, assistant tool_calls, tool results."""
    turns, system = _turns(entry, row)
    tags = entry.tags
    roles = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant", tags["observation_tag"]: "tool",
             tags["function_tag"]: "assistant"}
    raw = []
    for i, turn in enumerate(turns):
        if turn.get(tags["role_tag"]) not in roles or turn.get(tags["role_tag"]) is None:
            raise RowError(f"turn {i + 1}: unknown role {turn.get(tags['role_tag'])!r}")
        raw.append({**turn, "role": roles[turn[tags["role_tag"]]], "content": turn.get(tags["content_tag"])})
    messages = parse_messages(raw, entry.columns["messages"])
    return _split(entry, row, messages, system)


def _split(entry, row: dict, messages: list[dict], system):
    """A sharegpt/openai conversation → (prompt, answers) by the entry's kind."""
    if entry.ranking:
        if len(messages) % 2 == 0 and entry.formatting == "sharegpt":
            raise RowError("wrong role order: a ranking row's conversation must end with the user's turn "
                           "(the answers are chosen/rejected)")
        answers = [_answer(entry, _col(entry, row, c), c) for c in ("chosen", "rejected")]
        return messages, answers, system
    if len(messages) % 2 != 0 and entry.formatting == "sharegpt":
        raise RowError(f"wrong role order: {len(messages)} turns; the conversation must end with the assistant's turn")
    if not messages:
        raise RowError("no messages")
    return messages[:-1], messages[-1:], system


def _answer(entry, value, column: str) -> dict:
    tags = entry.tags
    if not isinstance(value, dict):
        raise RowError(f"field {entry.columns.get(column)!r} must be one message object, got {type(value).__name__}")
    if value.get(tags["role_tag"]) not in (tags["assistant_tag"], tags["function_tag"]):
        raise RowError(f"field {entry.columns[column]!r} must be an assistant (or function call) message")
    return _message(entry, value, f"field {entry.columns[column]!r}")


# --- (prompt, answers, system) → sample -------------------------------------------------------


def _build(entry, kind: str, prompt: list, answers: list, system, row: dict, opts: FormatOptions):
    system = _string(system, "the system prompt")
    head = [{"role": "system", "content": system}] if system.strip() else []
    tools = normalise_tools(_col(entry, row, "tools"), f"field {entry.columns.get('tools')!r}")
    if kind == "text":
        text = fill_placeholders(prompt[0]["content"], opts.placeholders)
        if not text.strip():
            raise RowError(f"empty text (field {entry.columns.get('prompt')!r})")
        return Text(text)
    if kind == "conversation":
        if not answers:
            raise RowError(f"missing field {entry.columns.get('response')!r}")
        messages = finish_messages(head + prompt + answers, opts)
        return Conversation(messages, tools=tools, images=_images(entry, row, messages, opts))
    prompt = finish_messages(head + prompt, opts, require_assistant_last=False)
    if prompt[-1]["role"] not in ("user", "tool"):
        raise RowError(f"the prompt ends with a {prompt[-1]['role']} turn; it must end with the user's")
    answers = [_filled(a, opts) for a in answers]
    for a in answers:
        check_roles(prompt + [a])
    if kind == "preference":
        if len(answers) != 2:
            raise RowError(f"missing field {entry.columns.get('chosen')!r} or {entry.columns.get('rejected')!r}")
        return Preference(prompt, [answers[0]], [answers[1]], tools=tools, images=_images(entry, row, prompt, opts))
    if not answers:
        raise RowError(f"missing field {entry.columns.get('response')!r}")
    return Unpaired(prompt, answers[-1:], _label(_col(entry, row, "kto_tag"), entry.columns["kto_tag"]))


def _images(entry, row: dict, messages: list[dict], opts: FormatOptions) -> list:
    """The entry's `images` column (paths relative to dataset_dir, LLaMA-Factory's media_dir default)."""
    column = entry.columns.get("images")
    if not column:
        return []
    return row_images(row, messages, column=column, base_dir=opts.dataset_dir)


def _filled(message: dict, opts: FormatOptions) -> dict:
    if opts.placeholders and isinstance(message.get("content"), str):
        return {**message, "content": fill_placeholders(message["content"], opts.placeholders)}
    return message


def _label(value, column: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:  # a CSV file's true/false
        return value.strip().lower() in TRUE
    raise RowError(f"field {column!r} must be true or false (KTO: desirable or not), got {value!r}")
