"""What a data row becomes after its format is understood, before tokenisation."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Conversation:
    """OpenAI-style messages: {"role": system|user|assistant|tool, "content": str, ...}."""

    messages: list[dict]
    tools: list[dict] | None = None
    where: str = ""
    images: list = field(default_factory=list)  # chat.images.ImageRef, one per "<image>" in the messages


@dataclass
class Text:
    text: str
    where: str = ""


@dataclass
class Preference:
    """A prompt (messages ending with a user turn) and two answers (assistant messages)."""

    prompt: list[dict]
    chosen: list[dict]
    rejected: list[dict]
    tools: list[dict] | None = None
    where: str = ""
    images: list = field(default_factory=list)  # chat.images.ImageRef, one per "<image>" in the prompt


@dataclass
class Unpaired:
    """KTO: one answer marked desirable (True) or not."""

    prompt: list[dict]
    completion: list[dict]
    label: bool
    where: str = ""


@dataclass
class Labelled:
    """Classification: a text and its label (name or id)."""

    text: str
    label: object
    text_pair: str | None = None
    where: str = ""


@dataclass
class Prompt:
    """Only a prompt (RL stages and sequence-level distillation generate the answer)."""

    prompt: list[dict]
    extra: dict = field(default_factory=dict)
    where: str = ""
    images: list = field(default_factory=list)  # chat.images.ImageRef, one per "<image>" in the prompt


class RowError(ValueError):
    """A malformed row: the reason, reported with the row's file:line."""
