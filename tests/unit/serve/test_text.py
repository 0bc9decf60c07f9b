"""Streaming text: stop strings across token boundaries, no half characters, nothing lost."""

from __future__ import annotations

import pytest

from danlu.serve.text import TextStream


def run(tokenizer, text: str, stop=()):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stream, pieces, hit = TextStream(tokenizer, tuple(stop)), [], False
    for t in ids:
        piece, hit = stream.push(t)
        pieces.append(piece)
        if hit:
            break
    if not hit:
        pieces.append(stream.flush())
    return pieces, hit


@pytest.mark.parametrize("text", ["Hello world, how are you?", "流云工单是一款面向小团队的工单系统。", "mixed 中文 and English!"])
def test_pieces_join_to_the_decoded_text_and_never_hold_half_a_character(tiny_tokenizer, text):
    pieces, hit = run(tiny_tokenizer, text)
    assert not hit and "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


@pytest.mark.parametrize("text, stop, expected", [
    ("The answer is 42. END and more", ["END"], "The answer is 42. "),
    ("abc###def", ["##", "zzz"], "abc"),
    ("工单系统。完毕后面", ["完毕"], "工单系统。"),
    ("no stop here", ["STOP"], "no stop here"),
])
def test_text_is_cut_at_the_first_stop_string(tiny_tokenizer, text, stop, expected):
    pieces, _ = run(tiny_tokenizer, text, stop)
    assert "".join(pieces) == expected


def test_a_possible_stop_prefix_is_held_back_until_it_is_decided(tiny_tokenizer):
    stream = TextStream(tiny_tokenizer, ("ENDX",))
    out = []
    for t in tiny_tokenizer("hello END", add_special_tokens=False)["input_ids"]:
        out.append(stream.push(t)[0])
    assert "END" not in "".join(out)  # could still become ENDX
    assert "".join(out) + stream.flush() == "hello END"
