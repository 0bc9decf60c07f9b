"""The Modelfile: FROM the GGUF, a Go template for known families, one stop per stop token."""

from __future__ import annotations

from danlu.export.check import TrainedChat
from danlu.export.ollama import CHATML, modelfile, template_family
from danlu.models.builtin import _chat_template


def test_families_are_read_from_the_template_markers():
    assert template_family(_chat_template()) == "chatml"
    assert template_family("<|start_header_id|>{{ x }}<|eot_id|>") == "llama3"
    assert template_family("[INST] {{ x }} [/INST]") is None and template_family(None) is None


def test_modelfile_for_a_chatml_run(tiny_tokenizer):
    trained = TrainedChat(_chat_template(), "<|im_end|>", [2, 0])
    text = modelfile("model-f16.gguf", trained, tiny_tokenizer)
    assert "FROM ./model-f16.gguf" in text and f'TEMPLATE """{CHATML}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "<|endoftext|>"' in text


def test_chatml_go_template_renders_like_the_jinja_template_for_a_plain_conversation(tiny_tokenizer):
    """Emulate Ollama's loop over .Messages for system/user turns and compare with the tokenizer."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    emulated = body + "<|im_start|>assistant\n"
    assert CHATML.startswith("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}")
    assert emulated == tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
