"""The exported GGUF files in the real loader: llama.cpp (llama-cpp-python, built from source by
`make test-gguf`). Opt-in: skipped when llama_cpp is not installed.

For each layout (Qwen2: builtin:tiny; Llama with permuted q/k: builtin:tiny-llama) and type
(f16, q8_0): llama.cpp tokenises the chat prompts exactly as the HF tokenizer does, its
next-token logits agree with transformers' within the tolerance below, and its greedy
continuation equals transformers' greedy continuation token for token.

Tolerance. Let E_w = max |logits(fp32 weights) − logits(the file's weights, dequantised, run in
fp32 by transformers)|: the error of rounding the weights alone (measured by the export itself).
llama.cpp's CPU matmuls also round the other operand, the activations, to the weight type's
vec-dot type (f16 → F16, q8_0 → Q8_0) and accumulate in fp32 in another order. Rounding the
second operand of each product to the same precision adds an error of the same order as rounding
the first, and reordering fp32 sums adds ~1e-6 relative; so llama.cpp should be within ~2·E_w of
transformers' fp32 logits. We allow 3·E_w + 1e-3 (measured figures in the closing note of
issue 7). A wrong tensor map, a missing q/k permutation or a wrong RoPE base gives errors of the
size of the logits themselves (~1-10), far above this bound."""

from __future__ import annotations

import pytest
import torch

from danlu.export.run import ExportOptions, export_run
from tests.unit.serve.runs import one_torch_thread, trained_run

llama_cpp = pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.gguf
one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

CONVERSATIONS = [
    [{"role": "user", "content": "What is FlowDesk?"}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "如何导出数据？"}],
    [{"role": "user", "content": "Is there a free trial?"}],
]
GREEDY_TOKENS = 16


@pytest.fixture(scope="module", params=["builtin:tiny", "builtin:tiny-llama"])
def merged(request, tmp_path_factory):
    """(run, merged HF dir) of a run trained long enough to answer confidently."""
    name = request.param.split(":")[1] + "-long"
    run = trained_run(name, model=request.param, steps=40)
    out = tmp_path_factory.mktemp(name) / "merged"
    export_run(str(run), out, ExportOptions(merge=True))
    return run, out


def hf_model(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(str(folder)))


def cpp_logits(llm, ids):
    import numpy as np

    llm.reset()
    llm.eval(ids)
    return torch.from_numpy(np.array(llm.scores[: len(ids)], dtype=np.float32))


def cpp_greedy(llm, ids, n):
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        token = int(llm.scores[llm.n_tokens - 1].argmax())
        out.append(token)
        llm.eval([token])
    return out


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_llama_cpp_loads_the_export_and_agrees_with_transformers(merged, kind, tmp_path):
    run, merged_dir = merged
    report = export_run(str(run), tmp_path / kind, ExportOptions(gguf=True, gguf_type=kind))
    weight_error = report["gguf"]["logit_error_dequantized"]["max_abs"]
    llm = llama_cpp.Llama(model_path=str(tmp_path / kind / report["gguf"]["file"]), n_ctx=512, logits_all=True,
                          n_threads=1, verbose=False)
    model, tok = hf_model(merged_dir)
    assert llm.metadata["tokenizer.chat_template"] == tok.chat_template
    worst = 0.0
    for messages in CONVERSATIONS:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == ids, "tokenisation differs"
        with torch.no_grad():
            ref = model(torch.tensor([ids])).logits[0]
        got = cpp_logits(llm, ids)[:, : ref.shape[-1]]
        worst = max(worst, float((got - ref).abs().max()))
        gen = model.generate(torch.tensor([ids]), max_new_tokens=GREEDY_TOKENS, do_sample=False, eos_token_id=None,
                             pad_token_id=tok.pad_token_id, output_scores=True, return_dict_in_generate=True)
        ref_greedy = gen.sequences[0, len(ids):].tolist()
        # agree up to the first near tie: where transformers' top two are closer than the quantised
        # weights can move a logit, llama.cpp may pick either (f16: no such position on these prompts)
        top2 = [s[0].float().topk(2).values for s in gen.scores]
        tie = next((i for i, v in enumerate(top2) if float(v[0] - v[1]) <= 2 * (3 * weight_error + 1e-3)), len(top2))
        got_greedy = cpp_greedy(llm, ids, GREEDY_TOKENS)
        assert got_greedy[:tie] == ref_greedy[:tie], f"greedy continuations differ before the first near tie ({tie})"
        if kind == "f16":
            assert got_greedy == ref_greedy, "greedy continuations differ"
    tolerance = 3 * weight_error + 1e-3
    print(f"\n{run.name} {kind}: max |Δlogit| llama.cpp vs transformers {worst:.2e}; "
          f"weights-only {weight_error:.2e}; tolerance {tolerance:.2e}")
    assert worst <= tolerance


@pytest.mark.parametrize("kind, fallback", [("q4_k_m", "Q5_0"), ("q6_k", "Q8_0")])
def test_llama_cpp_k_quants_load_with_llama_cpps_fallback_for_small_rows(merged, kind, fallback, tmp_path):
    """k-quants come from llama.cpp's own quantiser. The tiny models' rows (64, 176) are not blocks
    of 256: llama.cpp falls back per tensor (64 → a 32-block type, 176 → F16), and the file must
    still load in llama.cpp with logits within the same bound as f16/q8_0 (3·E_w + 1e-3)."""
    run, merged_dir = merged
    report = export_run(str(run), tmp_path / kind, ExportOptions(gguf=True, gguf_type=kind))
    g = report["gguf"]
    assert g["file"] == f"model-{kind}.gguf" and fallback in g["tensor_types"] and "F16" in g["tensor_types"]
    assert f"FROM ./model-{kind}.gguf" in (tmp_path / kind / "Modelfile").read_text()
    llm = llama_cpp.Llama(model_path=str(tmp_path / kind / g["file"]), n_ctx=512, logits_all=True,
                          n_threads=1, verbose=False)
    model, tok = hf_model(merged_dir)
    worst = 0.0
    for messages in CONVERSATIONS:
        ids = tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                  add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            ref = model(torch.tensor([ids])).logits[0]
        worst = max(worst, float((cpp_logits(llm, ids)[:, : ref.shape[-1]] - ref).abs().max()))
    assert worst <= 3 * g["logit_error_dequantized"]["max_abs"] + 1e-3
