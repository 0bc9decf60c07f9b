"""`response_format` for chat completions: `json_object` (any JSON object) and `json_schema` (JSON
valid against the schema) by constrained decoding with lm-format-enforcer (a character-level JSON
schema parser walking the tokenizer's prefix tree): at each step the engine keeps only the tokens
that extend a valid prefix, and the answer's turn-end token only once the JSON is complete. So
even a random model answers with JSON that parses and validates; a model that runs out of
`max_tokens` stops with finish_reason "length" and a truncated JSON, as OpenAI's does.

The tokenizer's prefix tree is built once per model (decoding the vocabulary: seconds on a real
model) off the event loop; each request gets its own TokenEnforcer (one parser state per row)."""

from __future__ import annotations

import asyncio
import threading

from danlu.serve.errors import bad_request

HINT = "pip install 'danlu[serve]' (lm-format-enforcer)"
_DATA: dict[tuple, object] = {}
_LOCK = threading.Lock()


class Constraint:
    """The tokens a row may emit next (lm-format-enforcer's TokenEnforcer over prompt + answer)."""

    def __init__(self, enforcer, stop_ids: tuple[int, ...]):
        self.enforcer, self.stop_ids = enforcer, frozenset(stop_ids)

    def allowed(self, prompt: list[int], generated: list[int]) -> list[int]:
        """Once the JSON is complete the answer ends (the library would allow trailing whitespace
        without bound, where a weak model can spend all its max_tokens)."""
        tokens = self.enforcer.get_allowed_tokens(list(prompt) + list(generated)).allowed_tokens
        ends = [t for t in tokens if t in self.stop_ids]
        return ends or tokens


def schema_of(response_format) -> tuple[bool, dict | None]:
    """(constrained?, JSON schema or None for any JSON object) of an OpenAI response_format."""
    if response_format is None:
        return False, None
    if not isinstance(response_format, dict) or "type" not in response_format:
        raise bad_request("response_format: give {\"type\": \"text\" | \"json_object\" | \"json_schema\"}",
                          param="response_format")
    kind = response_format["type"]
    if kind == "text":
        return False, None
    if kind == "json_object":
        return True, {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad_request("response_format.json_schema.schema: give the JSON schema (an object)",
                              param="response_format")
        return True, schema
    raise bad_request(f"response_format.type {kind!r}: choose text, json_object or json_schema",
                      param="response_format")


def _regular_tokens(tokenizer) -> list[tuple[int, str, bool]]:
    """(id, text, starts a word) of every non-special token, as lm-format-enforcer's transformers
    integration builds them (that module imports a path transformers 5 no longer has). Tokens
    holding part of a UTF-8 character are left out: the character-level parser cannot follow
    them (a character split over two tokens; whole-character tokens, most CJK ones included, stay)."""
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    out = []
    for i in range(len(tokenizer)):
        if i in special:
            continue
        after_zero = tokenizer.decode([zero, i])[1:]  # keeps a word-start token's leading space
        if "\ufffd" in after_zero or not _json_safe(after_zero):
            continue
        out.append((i, after_zero, len(after_zero) > len(tokenizer.decode([i]))))
    return out


def _json_safe(text: str) -> bool:
    """JSON allows no raw control character inside a string; the library checks only newlines there,
    so a token holding U+0000–U+001F (a tab too) is left out; "\n"/"\r" stay for whitespace between values."""
    return all(ord(c) >= 0x20 or c in "\n\r" for c in text)


def _tokenizer_data(tokenizer, stop_ids: tuple[int, ...]):
    from lmformatenforcer import TokenEnforcerTokenizerData

    key = (id(tokenizer), stop_ids)
    with _LOCK:
        if key not in _DATA:
            # the answer ends with the template's turn-end token(s), not necessarily the tokenizer's EOS
            data = TokenEnforcerTokenizerData(_regular_tokens(tokenizer),
                                              lambda ids: tokenizer.decode(ids).rstrip("\ufffd"),
                                              list(stop_ids), False, len(tokenizer))
            # a string's alphabet is every one-character token, "\n" and "\r" included: JSON forbids them
            # inside strings (whitespace between values is allowed by the parser on its own)
            data.tokenizer_alphabet = "".join(c for c in data.tokenizer_alphabet if ord(c) >= 0x20)
            _DATA[key] = data
        return _DATA[key]


def _build(tokenizer, stop_ids: tuple[int, ...], schema: dict) -> Constraint:
    from lmformatenforcer import JsonSchemaParser, TokenEnforcer

    try:  # whitespace between JSON tokens: the library's bound (about 12 in a row; a weak model uses it)
        parser = JsonSchemaParser(schema)
    except Exception as exc:  # noqa: BLE001 — the library's own complaint about the schema
        raise bad_request(f"response_format: this JSON schema cannot be enforced ({exc})"[:500],
                          param="response_format") from None
    return Constraint(TokenEnforcer(_tokenizer_data(tokenizer, stop_ids), parser), stop_ids)


async def constraint_for(backend, entry, response_format) -> Constraint | None:
    """The Constraint a chat request's response_format asks for (None for text)."""
    constrained, schema = schema_of(response_format)
    if not constrained:
        return None
    if getattr(backend, "name", "hf") != "hf":
        raise bad_request("response_format is served by the hf backend only (danlu serve --backend hf)",
                          param="response_format", code="unsupported_parameter")
    try:
        import lmformatenforcer  # noqa: F401
    except ImportError:
        raise bad_request(f"response_format needs lm-format-enforcer on the server: {HINT}",
                          param="response_format", code="unsupported_parameter") from None
    return await asyncio.to_thread(_build, entry.tokenizer, tuple(sorted(entry.stop_token_ids)), schema)
