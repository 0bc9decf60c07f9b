"""WER / CER (danlu.eval.wer; the `wer` and `cer` metrics): edits over reference length, summed
over the corpus; Chinese scored per character; case and punctuation ignored."""

from __future__ import annotations

import pytest

from danlu.eval.metrics import compute
from danlu.eval.wer import cer, edit_distance, error_rate, words, wer


@pytest.mark.parametrize("hyp, ref, expected", [
    ("the cat sat", "the cat sat", 0.0),
    ("the cat", "the cat sat", 100 / 3),  # one deletion
    ("the big cat sat", "the cat sat", 100 / 3),  # one insertion
    ("a dog sat", "the cat sat", 200 / 3),  # two substitutions
    ("The CAT, sat!", "the cat sat", 0.0),  # case and punctuation ignored
    ("", "the cat sat", 100.0),
    ("我爱北京", "我爱北京", 0.0),
    ("我爱南京", "我爱北京", 25.0),  # Chinese: one word per character
    ("yes 是", "yes 否", 50.0),  # mixed scripts
])
def test_wer_table(hyp, ref, expected):
    assert wer([hyp], [ref]) == pytest.approx(expected)


def test_corpus_rate_sums_edits_over_reference_words():
    value, per = error_rate(["a b", "x"], ["a b c d", "y"], words)
    assert value == pytest.approx(100 * (2 + 1) / (4 + 1))  # not the mean of 50 and 100
    assert per == pytest.approx([50.0, 100.0])


def test_cer_counts_characters():
    assert cer(["helo"], ["hello"]) == pytest.approx(20.0)
    assert cer(["hello world"], ["helloworld"]) == pytest.approx(0.0)  # spaces are not characters
    assert edit_distance(list("kitten"), list("sitting")) == 3


def test_registered_as_lower_is_better_metrics():
    scores = compute(["wer", "cer"], ["我爱南京"], ["我爱北京"])
    assert scores["wer"].value == pytest.approx(25.0) and scores["cer"].value == pytest.approx(25.0)
    from danlu.eval.metrics import higher_is_better

    assert not higher_is_better("wer") and not higher_is_better("eval_cer")
