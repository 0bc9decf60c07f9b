"""Huge rows and long conversations cost what train.max_length allows (RELIABILITY.md case 16):
encoding with max_length gives exactly the ids and labels of encoding everything and then
truncating, while the work done stops at the kept tokens (no prefix re-render per turn)."""

from __future__ import annotations

import copy

import pytest

from danlu.chat.messages import Conversation, Text
from danlu.chat.templates import resolve_template
from danlu.data.encode import SampleDropped, char_budget, encode_conversation, encode_text, fit_length


def _conversation(turns: int) -> list[dict]:
    msgs = [{"role": "system", "content": "你是客服助手。"}]
    for i in range(turns):
        msgs += [{"role": "user", "content": f"Question {i}: 怎么导出 {i}?"},
                 {"role": "assistant", "content": f"Answer {i}: 设置 → 导出 ({i})."}]
    return msgs


def _template(tok, kind: str, tmp_path):
    tok = copy.deepcopy(tok)
    if kind == "auto":
        return resolve_template(tok, "auto")
    jinja = tmp_path / "plain.jinja"  # writes no end token: danlu appends a learned EOS per answer
    jinja.write_text("{% for m in messages %}{% if m.role == 'user' %}Q: {{ m.content }}\nA:\n"
                     "{% elif m.role == 'assistant' %}{{ m.content }}\n{% endif %}{% endfor %}")
    return resolve_template(tok, str(jinja))


def _fit(enc, n, policy="truncate"):
    try:
        e = fit_length(enc, n, policy, "f:1")
    except SampleDropped as exc:
        return str(exc).split(":")[0]
    return e.input_ids, e.labels


@pytest.mark.parametrize("kind", ["auto", "plain"])
@pytest.mark.parametrize("max_length", [12, 200])
@pytest.mark.parametrize("opts", [{}, {"mask_history": True}, {"train_on_prompt": True}])
def test_bounded_equals_full_then_truncated(tiny_tokenizer, tmp_path, kind, max_length, opts):
    tpl = _template(tiny_tokenizer, kind, tmp_path)
    conv = Conversation(_conversation(150))  # longer than char_budget for every max_length here
    assert len(tpl.render(conv.messages)) > char_budget(tpl.tokenizer, max_length)
    full = encode_conversation(conv, tpl, **opts)
    bounded = encode_conversation(conv, tpl, max_length=max_length, **opts)
    assert bounded.cut and len(bounded) < len(full)
    assert _fit(bounded, max_length) == _fit(full, max_length)
    with pytest.raises(SampleDropped, match="more than"):
        fit_length(bounded, max_length, "drop", "f:1")


def test_short_conversation_unchanged(tiny_tokenizer, tmp_path):
    tpl = _template(tiny_tokenizer, "auto", tmp_path)
    conv = Conversation(_conversation(3))
    full, bounded = encode_conversation(conv, tpl), encode_conversation(conv, tpl, max_length=4096)
    assert not bounded.cut and (bounded.input_ids, bounded.labels) == (full.input_ids, full.labels)


def test_huge_message_is_cut_before_rendering(tiny_tokenizer, tmp_path):
    tpl = _template(tiny_tokenizer, "auto", tmp_path)
    rendered = []
    render = tpl.render
    tpl.render = lambda msgs, **kw: rendered.append(out := render(msgs, **kw)) or out
    huge = [{"role": "user", "content": "x" * 2_000_000 + " tail"}, {"role": "assistant", "content": "ok"}]
    enc = encode_conversation(Conversation(huge), tpl, max_length=64)
    assert enc.cut and max(len(r) for r in rendered) < 2 * char_budget(tpl.tokenizer, 64)
    assert _fit(enc, 64) == "masked to nothing"  # the answer lies past max_length, as without the cut


def test_text_bounded_equals_full_then_truncated(tiny_tokenizer):
    text = Text("Plain text 纯文本, numbers 12345 and words. " * 3000)
    full, bounded = encode_text(text, tiny_tokenizer), encode_text(text, tiny_tokenizer, max_length=50)
    assert bounded.cut and len(bounded) < len(full) // 10
    assert _fit(bounded, 50) == _fit(full, 50)


def test_renders_stop_at_max_length_not_at_turn_count(tiny_tokenizer, tmp_path):
    """The old code rendered the prefix of every assistant turn: quadratic in turns."""
    tpl = _template(tiny_tokenizer, "auto", tmp_path)
    counts = {}
    for turns in (100, 1000):
        calls = []
        render = tpl.render
        tpl.render = lambda msgs, _r=render, **kw: calls.append(len(msgs)) or _r(msgs, **kw)
        encode_conversation(Conversation(_conversation(turns)), tpl, max_length=64)
        tpl.render = render
        counts[turns] = (len(calls), sum(calls) - max(calls))  # prefix renders, messages they held
    assert counts[1000] == counts[100] and counts[100][0] < 20


@pytest.mark.parametrize("policy", ["truncate", "drop"])
def test_preference_pair_with_a_huge_answer_equals_the_unbounded_result(tiny_tokenizer, tmp_path, policy):
    from danlu.config.schema import DataConfig
    from danlu.chat.messages import Preference
    from danlu.stages._preference_data import encode_answer, encode_pair, fit_pair

    tpl = _template(tiny_tokenizer, "auto", tmp_path)
    prompt = [{"role": "user", "content": "Write a long answer."}]
    chosen = [{"role": "assistant", "content": "Long answer 长回答. " * 3000}]
    rejected = [{"role": "assistant", "content": "no"}]
    cfg = DataConfig(train="x.jsonl", overlong=policy)
    try:
        got = encode_pair(Preference(prompt, chosen, rejected, where="f:1"), tpl, cfg, 48)[0]
    except SampleDropped as exc:
        got = str(exc).split(":")[0]
    p1, c = encode_answer(tpl, prompt, chosen)  # the unbounded path, then data.overlong
    p2, r = encode_answer(tpl, prompt, rejected)
    try:
        want = fit_pair(p1, [c, r], 48, policy, "f:1")
        want = {"prompt_ids": p1, "chosen_ids": want[0], "rejected_ids": want[1]}
    except SampleDropped as exc:
        want = str(exc).split(":")[0]
    assert got == want
    huge_prompt = [{"role": "user", "content": "x" * 10 * char_budget(tpl.tokenizer, 48)}]
    with pytest.raises(SampleDropped, match="prompt alone"):
        encode_pair(Preference(huge_prompt, chosen, rejected, where="f:1"), tpl, DataConfig(train="x.jsonl"), 48)
