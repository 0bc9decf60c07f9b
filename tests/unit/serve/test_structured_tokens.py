"""Tokens a JSON answer may use: lm-format-enforcer checks only newlines inside strings, so danlu
leaves out tokens holding other raw control characters (JSON forbids them in strings)."""

import pytest

from danlu.serve.structured import _json_safe


@pytest.mark.parametrize("text,ok", [("abc", True), (" 茶", True), ("\n", True), ("\r\n  ", True),
                                     ("\t", False), ("a\x19", False), ("\x00", False), ("\x1f", False)])
def test_control_characters_are_left_out(text, ok):
    assert _json_safe(text) is ok
