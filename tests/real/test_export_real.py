"""Export of a LoRA run on real SmolLM2 weights (trained on three made-up facts):
- `danlu export --merge`, then plain transformers in a subprocess that never imports danlu (the merged
  folder's own tokenizer, chat template and generation config) answers greedily exactly what
  `danlu chat --prompt` answers from the run (adapter unmerged);
- `danlu export --merge --gguf` (f16) loaded in llama.cpp (llama-cpp-python) continues 32 tokens greedily
  exactly as transformers does on the merged folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import run_cli
from tests.real.conftest import FACTS, needs_smollm2

pytestmark = [pytest.mark.real, needs_smollm2]

PROMPTS = [q for q, _ in FACTS] + ["What is the capital of France?"]
NEW_TOKENS = 24
PLAIN = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(1)
folder, prompts, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
out = []
for p in prompts:
    ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    gen = model.generate(**ids, max_new_tokens=n, do_sample=False)
    out.append(tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
assert "danlu" not in sys.modules
print(json.dumps(out))
"""


def plain_transformers(folder, prompts, n):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no danlu on the path at all
    res = subprocess.run([sys.executable, "-c", PLAIN, str(folder), json.dumps(prompts), str(n)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_merged_folder_in_plain_transformers_answers_as_danlu_chat(facts_run, merged_dir):
    chat = []
    for prompt in PROMPTS:
        res = run_cli("chat", str(facts_run), "--prompt", prompt, "--max-new-tokens", str(NEW_TOKENS))
        assert res.returncode == 0, res.stderr[-3000:]
        chat.append(res.stdout.strip())
    plain = plain_transformers(merged_dir, PROMPTS, NEW_TOKENS)
    assert [p.strip() for p in plain] == chat
    for (_, answer), said in zip(FACTS, chat):
        assert said == answer  # the facts were learnt; so the comparison is on meaningful answers


def hf_greedy(model, ids, n):
    """Plain argmax continuation of n tokens (end-of-turn tokens included, as llama.cpp's loop below)."""
    import torch

    out, past, step = [], None, torch.tensor([ids])
    with torch.no_grad():
        for _ in range(n):
            res = model(step, past_key_values=past, use_cache=True)
            past = res.past_key_values
            out.append(int(res.logits[0, -1].argmax()))
            step = torch.tensor([[out[-1]]])
    return out


def test_gguf_f16_in_llama_cpp_continues_as_transformers(facts_run, merged_dir, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make test-gguf)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    res = run_cli("export", str(facts_run), "--merge", "--gguf", "--gguf-type", "f16", "-o", str(tmp_path / "g"),
                  "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout[res.stdout.index("{"):])
    llm = llama_cpp.Llama(model_path=str(tmp_path / "g" / report["gguf"]["file"]), n_ctx=256, n_threads=1,
                          verbose=False, logits_all=True)  # scores are kept only with logits_all
    tok = AutoTokenizer.from_pretrained(str(merged_dir))
    model = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
    texts = [tok.apply_chat_template([{"role": "user", "content": FACTS[0][0]}], tokenize=False,
                                     add_generation_prompt=True), "FlowDesk is a help-desk product. Its support team"]
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == ids, "tokenisation differs"
        ref = hf_greedy(model, ids, 32)
        llm.reset()
        cpp = []
        llm.eval(ids)
        for _ in range(32):
            token = int(llm.scores[llm.n_tokens - 1].argmax())
            cpp.append(token)
            llm.eval([token])
        assert cpp == ref, f"{text!r}: llama.cpp {tok.decode(cpp)!r} vs transformers {tok.decode(ref)!r}"
    llm.close()
