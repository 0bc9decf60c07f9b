"""Word and character error rates for speech recognition (and any transcript-like answer):
edits (substitutions + deletions + insertions) of the best alignment over the reference length,
summed over the corpus (as jiwer and the Whisper papers report them). Chinese (and Japanese kana,
Korean hangul) has no spaces between words: each such character is one word, so WER on Chinese is
per character. Case and punctuation are ignored; 0–100 scale, lower is better."""

from __future__ import annotations

import re
import unicodedata

# a CJK ideograph, kana or hangul syllable alone, else a run of letters/digits (apostrophes kept: don't)
WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\W_]+(?:'[^\W_]+)*")


def words(text: str) -> list[str]:
    return WORD.findall(unicodedata.normalize("NFKC", text).lower())


def chars(text: str) -> list[str]:
    return list("".join(words(text)))


def edit_distance(hyp: list[str], ref: list[str]) -> int:
    """Levenshtein distance between two token lists (one row of the table at a time)."""
    prev = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        cur = [i] + [0] * len(ref)
        for j, r in enumerate(ref, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r))
        prev = cur
    return prev[-1]


def error_rate(preds: list[str], refs: list[str], unit=words) -> tuple[float, list[float]]:
    """(corpus rate, per-sample rates), in percent. An empty reference counts its insertions
    against a length of 1."""
    edits = total = 0
    per = []
    for p, r in zip(preds, refs):
        hyp, ref = unit(p), unit(r)
        e = edit_distance(hyp, ref)
        edits, total = edits + e, total + len(ref)
        per.append(100.0 * e / max(len(ref), 1))
    return 100.0 * edits / max(total, 1), per


def wer(preds: list[str], refs: list[str]) -> float:
    return error_rate(preds, refs, words)[0]


def cer(preds: list[str], refs: list[str]) -> float:
    return error_rate(preds, refs, chars)[0]
