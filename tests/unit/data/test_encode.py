"""Golden tests: input_ids are exactly the tokenizer's own chat-template output; only assistant
tokens and the token that ends their turn carry labels — also when pad == eos; exactly one BOS."""

from __future__ import annotations

import copy

import pytest

from danlu.chat.messages import Conversation, Text
from danlu.chat.templates import resolve_template
from danlu.data.encode import IGNORE, SampleDropped, encode_conversation, encode_text, fit_length

CONVS = [
    [{"role": "user", "content": "How do I export data?"},
     {"role": "assistant", "content": "Settings → Export, as CSV or JSON."}],
    [{"role": "system", "content": "你是客服助手。"},
     {"role": "user", "content": "怎么开启两步验证？"},
     {"role": "assistant", "content": "在个人设置里绑定验证器应用。"},
     {"role": "user", "content": "备用码有几个？"},
     {"role": "assistant", "content": "10 个。"}],
    [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}],  # answer text also in prompt
]


def _tok(base, pad_is_eos=False, template="auto"):
    tok = copy.deepcopy(base)
    if pad_is_eos:
        tok.pad_token = tok.eos_token
        assert tok.pad_token_id == tok.eos_token_id
    return tok, resolve_template(tok, template)


def _labelled_text(tok, enc):
    return tok.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])


@pytest.mark.parametrize("pad_is_eos", [False, True])
@pytest.mark.parametrize("messages", CONVS)
def test_ids_equal_template_and_only_assistant_labelled(tiny_tokenizer, messages, pad_is_eos):
    tok, tpl = _tok(tiny_tokenizer, pad_is_eos)
    enc = encode_conversation(Conversation(messages), tpl)
    assert enc.input_ids == list(tok.apply_chat_template(messages, tokenize=True)["input_ids"])
    # the labelled tokens decode to exactly the assistant turns, each followed by its end token
    expected = "".join(m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant")
    assert "".join(_labelled_text(tok, enc)) == expected
    eos_labelled = [lab for lab in enc.labels if lab == tok.convert_tokens_to_ids("<|im_end|>")]
    assert len(eos_labelled) == sum(m["role"] == "assistant" for m in messages)
    # labels equal ids wherever set
    assert all(lab in (IGNORE, i) for i, lab in zip(enc.input_ids, enc.labels))


def test_mask_history_and_train_on_prompt(tiny_tokenizer):
    tok, tpl = _tok(tiny_tokenizer)
    conv = Conversation(CONVS[1])
    last = encode_conversation(conv, tpl, mask_history=True)
    assert "".join(_labelled_text(tok, last)) == "10 个。<|im_end|>"
    allp = encode_conversation(conv, tpl, train_on_prompt=True)
    assert allp.labels == allp.input_ids


def test_template_without_end_token_gets_learned_eos(tiny_tokenizer, tmp_path):
    """A template that writes no end token after answers: danlu appends EOS and labels it."""
    jinja = tmp_path / "plain.jinja"
    jinja.write_text("{% for m in messages %}{% if m.role == 'user' %}Q: {{ m.content }}\nA:\n"
                     "{% else %}{{ m.content }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}{% endif %}")
    tok, tpl = _tok(tiny_tokenizer, pad_is_eos=True, template=str(jinja))
    assert not tpl.turn_end_in_template and tpl.turn_end == tok.eos_token
    enc = encode_conversation(Conversation(CONVS[1][1:]), tpl)
    eos = tok.eos_token_id
    assert enc.input_ids.count(eos) == 2 and enc.labels.count(eos) == 2
    assert "".join(_labelled_text(tok, enc)) == "在个人设置里绑定验证器应用。<|im_end|>10 个。<|im_end|>"


def test_exactly_one_bos(tiny_tokenizer, tmp_path):
    jinja = tmp_path / "bos.jinja"
    jinja.write_text("{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}<|im_start|>{{ m.content }}"
                     "{% else %}{{ m.content }}<|im_end|>{% endif %}{% endfor %}"
                     "{% if add_generation_prompt %}{% endif %}")
    tok = copy.deepcopy(tiny_tokenizer)
    tok.bos_token = "<|endoftext|>"
    tpl = resolve_template(tok, str(jinja))
    enc = encode_conversation(Conversation(CONVS[0]), tpl)
    assert enc.input_ids[0] == tok.bos_token_id and enc.input_ids.count(tok.bos_token_id) == 1
    assert enc.input_ids == list(tok.apply_chat_template(CONVS[0], tokenize=True)["input_ids"])


@pytest.mark.parametrize("name", ["chatml", "qwen", "default"])
def test_named_templates(tiny_tokenizer, name):
    tok, tpl = _tok(tiny_tokenizer, template=name)
    enc = encode_conversation(Conversation(CONVS[0]), tpl)
    assert enc.input_ids == list(tok.apply_chat_template(CONVS[0], tokenize=True)["input_ids"])
    assert "".join(_labelled_text(tok, enc)).startswith(CONVS[0][1]["content"])


def test_template_needing_missing_tokens_is_a_clear_error(tiny_tokenizer):
    from danlu.errors import UserError

    with pytest.raises(UserError, match="llama3.*<\\|start_header_id\\|>"):
        resolve_template(copy.deepcopy(tiny_tokenizer), "llama3")


def test_text_sample_learns_every_token_and_eos(tiny_tokenizer):
    enc = encode_text(Text("Plain text 纯文本"), tiny_tokenizer)
    assert enc.labels == enc.input_ids and enc.input_ids[-1] == tiny_tokenizer.eos_token_id


def test_overlong_policies_and_masked_to_nothing(tiny_tokenizer):
    tok, tpl = _tok(tiny_tokenizer)
    enc = encode_conversation(Conversation(CONVS[1]), tpl)
    n = len(enc)
    assert len(fit_length(enc, n - 3, "truncate", "f:1")) == n - 3
    with pytest.raises(SampleDropped, match="over-long"):
        fit_length(enc, n - 3, "drop", "f:1")
    from danlu.errors import DataError

    with pytest.raises(DataError, match="f:1"):
        fit_length(enc, n - 3, "error", "f:1")
    with pytest.raises(SampleDropped, match="masked to nothing"):
        fit_length(enc, 8, "truncate", "f:1")  # only the prompt survives truncation
