"""alpaca: {"instruction", "input", "output", "system"?, "history"?: [[q, a], ...], "facts"?: [...]}.
`facts` (eval rows) rides on the answer message for the `facts` metric; templates ignore it."""

from __future__ import annotations

from danlu.chat.messages import Conversation, RowError
from danlu.data.formats.base import Format, FormatOptions, facts_field, finish_messages, row_images, text_field
from danlu.data.formats.registry import register_format


@register_format("alpaca")
class Alpaca(Format):
    kind = "conversation"
    signature = ("instruction", "output")
    priority = 40

    def convert(self, row, opts: FormatOptions) -> Conversation:
        instruction = text_field(row, "instruction", allow_empty=bool(row.get("input")))
        extra = text_field(row, "input", required=False)
        prompt = f"{instruction}\n{extra}" if instruction and extra else instruction or extra
        if row.get("output") is None:
            raise RowError("missing field 'output'")
        output = text_field(row, "output", required=False)
        if not output.strip():
            raise RowError("empty assistant turn (field 'output')")
        messages = []
        system = row.get("system")
        if isinstance(system, str) and system.strip():
            messages.append({"role": "system", "content": system})
        history = row.get("history") or []
        if not isinstance(history, list):
            raise RowError("field 'history' must be a list of [question, answer] pairs")
        for n, pair in enumerate(history):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise RowError(f"history item {n + 1} must be [question, answer]")
            messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
        answer = {"role": "assistant", "content": output}
        facts = facts_field(row)
        if facts is not None:
            answer["facts"] = facts
        messages += [{"role": "user", "content": prompt}, answer]
        messages = finish_messages(messages, opts)
        return Conversation(messages, images=row_images(row, messages))
