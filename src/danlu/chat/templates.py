"""Chat templates: the tokenizer's own (`data.template: auto`) or a named built-in one for base
models without a template (chatml, qwen, llama3, mistral, gemma, default), or a .jinja file.
`auto` on a tokenizer without a template picks the family its special tokens name (Gemma's
<start_of_turn>/<end_of_turn> → gemma, chatml's <|im_start|>/<|im_end|> → chatml), else 'default'.

A template also decides which token ends an assistant turn (`turn_end`: <|im_end|>,
<|eot_id|>, </s> ...). That token is learned with every answer and becomes a stop token of
the run's generation config, so the trained model stops where the template says it should."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from danlu.errors import UserError

log = logging.getLogger(__name__)
TEMPLATE_DIR = Path(__file__).parent / "templates"
NAMED = {"chatml": "chatml", "qwen": "chatml", "llama3": "llama3", "mistral": "mistral", "gemma": "gemma",
         "default": "default"}
# special tokens a named template writes literally; the tokenizer must know them as single tokens
NEEDS_TOKENS = {"chatml": ["<|im_start|>", "<|im_end|>"], "llama3": ["<|start_header_id|>", "<|eot_id|>"],
                "gemma": ["<start_of_turn>", "<end_of_turn>"]}
# `auto` without a template: the first family whose turn tokens the vocabulary has (Gemma base
# models, e.g. google/gemma-3-270m, ship no template but have the instruction-tuned turn tokens)
FAMILY_BY_TOKENS = ("gemma", "chatml", "llama3")
PROBE = "\u2063PROBE\u2063"  # invisible separators: no template rewrites or trims them


@dataclass
class ChatTemplate:
    tokenizer: object
    source: str  # "tokenizer", a built-in name, or a file path
    turn_end: str = ""  # token text that ends an assistant turn
    turn_end_in_template: bool = True  # False: the template writes no end token; danlu appends EOS
    stop_strings: list[str] = field(default_factory=list)

    def render(self, messages: list[dict], *, tools=None, add_generation_prompt: bool = False) -> str:
        from danlu.chat.tools import template_supports_tools, textualise, uses_tools, with_call_ids

        if uses_tools(messages, tools):
            if template_supports_tools(self.tokenizer):
                messages = with_call_ids(messages)
            else:
                messages, tools = textualise(messages, tools), None  # danlu's text form of calls and results
        kwargs = {"tools": tools} if tools else {}
        try:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
            )
        except Exception as exc:  # noqa: BLE001 — jinja raises many kinds; all mean this template rejects the row
            from danlu.chat.messages import RowError

            raise RowError(f"the chat template ({self.source}) rejected this conversation: {exc}") from None

    @property
    def turn_end_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.turn_end)

    def stop_token_ids(self) -> list[int]:
        """Token ids that end generation: the turn end first, then the tokenizer's EOS."""
        ids = [self.turn_end_id]
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids


def resolve_template(tokenizer, name: str = "auto") -> ChatTemplate:
    """Install the chosen template on `tokenizer` (named/file) and work out its turn end."""
    source = "tokenizer"
    if name == "auto":
        if not getattr(tokenizer, "chat_template", None):
            name = family_of(tokenizer)
    if name != "auto":
        tokenizer.chat_template = _template_text(name, tokenizer)
        source = name
    tpl = ChatTemplate(tokenizer, source)
    _find_turn_end(tpl)
    return tpl


def family_of(tokenizer) -> str:
    """The named template for a tokenizer without one: the family whose turn tokens it has."""
    vocab = tokenizer.get_vocab()
    for family in FAMILY_BY_TOKENS:
        if all(t in vocab for t in NEEDS_TOKENS[family]):
            log.info("the tokenizer has no chat template; its %s tokens select danlu's %r template",
                     "/".join(NEEDS_TOKENS[family]), family)
            return family
    log.warning("the tokenizer has no chat template; using danlu's 'default' template (set data.template)")
    return "default"


def _template_text(name: str, tokenizer) -> str:
    if name in NAMED:
        missing = [t for t in NEEDS_TOKENS.get(NAMED[name], []) if t not in tokenizer.get_vocab()]
        if missing:
            raise UserError(
                f"chat template {name!r} needs the tokens {', '.join(missing)}, which this tokenizer does not have",
                where="data.template",
                hint="use the model's own template (auto), or 'default', which needs no special tokens",
            )
        return (TEMPLATE_DIR / f"{NAMED[name]}.jinja").read_text(encoding="utf-8")
    p = Path(name).expanduser()
    if p.suffix in (".jinja", ".j2", ".txt") and p.is_file():
        return p.read_text(encoding="utf-8")
    raise UserError(
        f"unknown chat template {name!r}",
        where="data.template",
        hint=f"use auto, {', '.join(NAMED)}, or the path of a .jinja file",
    )


def _find_turn_end(tpl: ChatTemplate) -> None:
    """Render a probe conversation and read the token right after the assistant's text."""
    tok = tpl.tokenizer
    text = tpl.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": PROBE}])
    after = text[text.index(PROBE) + len(PROBE):] if PROBE in text else ""
    special = set(tok.all_special_tokens) | set(_added(tok))  # once: Gemma has 262k tokens, 6k of them added
    specials = sorted((t for t in tok.get_vocab() if t in special), key=len)
    for token in reversed(specials):  # longest first
        if after.lstrip(" ").startswith(token):
            tpl.turn_end, tpl.turn_end_in_template = token, True
            break
    else:
        if tok.eos_token is None:
            raise UserError("the tokenizer has no EOS token and its chat template ends turns with none")
        tpl.turn_end, tpl.turn_end_in_template = tok.eos_token, False
    tpl.stop_strings = [tpl.turn_end]
    prompt = tpl.render([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    if prompt.endswith(" "):
        log.warning("the chat template's generation prompt ends with a space: the answer's first token may be "
                    "split differently in training and in generation; prefer a template ending in a newline")


def _added(tok) -> list[str]:
    return [t.content if hasattr(t, "content") else str(t) for t in getattr(tok, "added_tokens_decoder", {}).values()]
