"""Train with the tokenizer the user saved. transformers 5 picks a tokenizer class from the
model's config (a qwen2 config → Qwen2Tokenizer) and that class may rebuild the pre-tokenizer
from its own rules instead of the saved tokenizer.json's ("123" one piece in the file, "1","2","3"
as loaded). llama.cpp and the export read tokenizer.json, so training on the class's split would
train other ids than are served. At load, a probe string is encoded both ways; on a difference
the saved file is loaded as it is (PreTrainedTokenizerFast: the same special tokens and chat
template), and only if even that differs is the load refused, with the two splits shown."""

from __future__ import annotations

import logging
from pathlib import Path

from danlu.errors import UserError

log = logging.getLogger(__name__)

# digits, CJK, contractions, punctuation runs, newlines, tabs and double spaces: where pre-tokenizers differ
PROBE = "Hello world, 你好世界 123\nIt's 2024-06-01: x=3.14159!!  Ünïcödé\tdone ...\n\n  end"


def saved_tokenizer_file(path: str, revision: str | None = None, **where) -> Path | None:
    """The tokenizer.json next to the model (a local folder, or the hub cache); None without one."""
    p = Path(path)
    if p.is_dir():
        return p / "tokenizer.json" if (p / "tokenizer.json").is_file() else None
    try:
        from transformers.utils import cached_file

        found = cached_file(path, "tokenizer.json", revision=revision, _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False, **where)
    except (OSError, ValueError):
        return None
    return Path(found) if found else None


def _pieces(tok, text: str) -> list[str]:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return tok.convert_ids_to_tokens(ids)


def follow_saved_file(tok, path: str, *, revision: str | None = None, quiet: bool = False, **where):
    """`tok` if it splits the probe as the saved tokenizer.json does; else that file loaded as it is
    (logged as a warning; `quiet`: at info level, for danlu's own builtin models)."""
    file = saved_tokenizer_file(path, revision, **where)
    if file is None:
        return tok
    from tokenizers import Tokenizer

    saved = Tokenizer.from_file(str(file))
    saved.no_padding()  # a file saved with padding on (BERT/MiniLM: pad to 128) pads a single encode
    saved.no_truncation()
    want = saved.encode(PROBE, add_special_tokens=False).tokens
    got = _pieces(tok, PROBE)
    if got == want:
        return tok
    from transformers import PreTrainedTokenizerFast

    fixed = PreTrainedTokenizerFast.from_pretrained(path, revision=revision, **where)
    if _pieces(fixed, PROBE) == want:
        (log.info if quiet else log.warning)("%s: transformers loads this tokenizer as %s, which splits text differently from the saved "
                    "tokenizer.json (%s); training with the saved tokenizer.json as it is, like llama.cpp and the "
                    "export will", path, type(tok).__name__, _first_difference(want, got))
        return fixed
    raise UserError(
        f"the tokenizer in {path} cannot be loaded as saved: tokenizer.json splits the probe text differently "
        f"from what transformers makes of it ({_first_difference(want, got)})",
        where="model.name_or_path",
        hint="save the tokenizer with tokenizer.save_pretrained() from the transformers version in use, or "
             "report it with the folder's tokenizer files")


def _first_difference(want: list[str], got: list[str]) -> str:
    n = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
    return f"from piece {n}: file {want[n:n + 6]} vs loaded {got[n:n + 6]}"
