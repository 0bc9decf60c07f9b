"""prompt/response: {"prompt", "response"} (also "completion", or "query"/"answer" pairs)."""

from __future__ import annotations

from danlu.chat.messages import Conversation
from danlu.data.formats.base import Format, FormatOptions, finish_messages, text_field
from danlu.data.formats.registry import register_format

PAIRS = (("prompt", "response"), ("prompt", "completion"), ("question", "answer"), ("query", "response"))


@register_format("prompt_response")
class PromptResponse(Format):
    kind = "conversation"
    priority = 60

    @classmethod
    def detect(cls, row):
        return "label" not in row and any(p in row and r in row for p, r in PAIRS)

    def convert(self, row, opts: FormatOptions) -> Conversation:
        prompt_key, answer_key = next((p, r) for p, r in PAIRS if p in row and r in row)
        messages = []
        system = row.get("system")
        if isinstance(system, str) and system.strip():
            messages.append({"role": "system", "content": system})
        messages += [
            {"role": "user", "content": text_field(row, prompt_key)},
            {"role": "assistant", "content": text_field(row, answer_key)},
        ]
        return Conversation(finish_messages(messages, opts))
