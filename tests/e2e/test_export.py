"""`danlu export` round trips on tiny trained runs: the merged directory loads with plain
transformers and matches the adapter model within 1e-4 (fp32); the GGUF file reads back with
gguf's reader (tensor names, shapes, metadata, template, EOS) for Qwen2 and Llama layouts;
int8 / int4 shrink the weights and report their logit error; a template / EOS mismatch stops
the export with exit 2 and writes nothing."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from danlu.export.run import ExportOptions, export_run
from tests.conftest import run_cli
from tests.unit.serve.runs import one_torch_thread, trained_run

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

PROMPT = "<|im_start|>user\nWhat is FlowDesk?<|im_end|>\n<|im_start|>assistant\n"


def adapter_logits(run, ids):
    from danlu.infer.load import load_for_inference

    loaded = load_for_inference(str(run), device="cpu", dtype=torch.float32)
    with torch.no_grad():
        return loaded.model(ids).logits


def test_merge_and_gguf_with_the_cli_round_trip(tmp_path):
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    run, out = trained_run("a"), tmp_path / "out"
    res = run_cli("export", str(run), "--merge", "--gguf", "-o", str(out), "--json", env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["merge"]["merge_error"]["max_abs"] <= 1e-4 and report["merge"]["reload_error"]["max_abs"] <= 1e-4

    # plain transformers: no danlu, no PEFT, no custom code
    config = json.loads((out / "config.json").read_text())
    assert "auto_map" not in config and not list(out.glob("*.bin")) and not (out / "adapter_config.json").exists()
    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    ids = tok(PROMPT, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        merged = model(ids).logits
    assert (merged - adapter_logits(run, ids)).abs().max() <= 1e-4
    assert tok.chat_template == AutoTokenizer.from_pretrained(str(run / "adapter")).chat_template
    assert GenerationConfig.from_pretrained(str(out)).eos_token_id == [2]

    # GGUF: read back with gguf's own reader
    reader = GGUFReader(str(out / "model-f16.gguf"))
    field = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert field["general.architecture"] == "qwen2" and field["qwen2.block_count"] == 2
    assert field["qwen2.embedding_length"] == 64 and field["qwen2.attention.head_count_kv"] == 2
    assert field["tokenizer.chat_template"] == tok.chat_template and field["tokenizer.ggml.eos_token_id"] == 2
    assert len(field["tokenizer.ggml.tokens"]) == config["vocab_size"]
    tensors = {t.name: tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors}
    state = model.state_dict()
    assert tensors["token_embd.weight"] == tuple(state["model.embed_tokens.weight"].shape)
    assert tensors["blk.1.attn_q.bias"] == tuple(state["model.layers.1.self_attn.q_proj.bias"].shape)
    assert tensors["blk.0.ffn_down.weight"] == tuple(state["model.layers.0.mlp.down_proj.weight"].shape)
    assert len(tensors) == len(state) - 1, "every weight but the tied lm_head"
    assert 'PARAMETER stop "<|im_end|>"' in (out / "Modelfile").read_text()
    assert report["gguf"]["logit_error_dequantized"]["max_rel"] < 0.01


# bounds on max |Δlogit| / max |logit|: NF4 on a 64-wide tiny model (one 64-value block per row)
# is coarse; what must not happen is an error of the size of the logits themselves
@pytest.mark.parametrize("kind, bound", [("int8", 0.2), ("int4", 1.0)])
def test_quantized_exports_are_smaller_and_report_their_error(tmp_path, kind, bound):
    from transformers import AutoModelForCausalLM

    run = trained_run("a")
    report = export_run(str(run), tmp_path / kind, ExportOptions(quantize=kind))
    q = report["quantize"]
    assert q["bytes"] < report["merge"]["bytes"]
    err = q["logit_error_vs_unquantised"]
    assert 0 < err["max_abs"] and err["max_rel"] < bound and err["positions"] > 50
    config = json.loads((tmp_path / kind / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "bitsandbytes"
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / kind))
    assert type(model.model.layers[0].mlp.down_proj).__name__ == ("Linear8bitLt" if kind == "int8" else "Linear4bit")


@pytest.mark.parametrize("model, kind, types, top1, rel", [
    ("builtin:tiny-llama", "f16", ["F16", "F32"], 0.95, 0.01),
    # norms stay F32; rows of 176 (the MLP width of the tiny models) are not blocks of 32: down_proj is F16
    ("builtin:tiny", "q8_0", ["F16", "F32", "Q8_0"], 0.9, 0.05),
])
def test_gguf_maps_back_to_the_same_model(tmp_path, model, kind, types, top1, rel):
    run = trained_run("llama", model=model) if "llama" in model else trained_run("a")
    report = export_run(str(run), tmp_path / kind, ExportOptions(gguf=True, gguf_type=kind))
    g = report["gguf"]
    assert g["architecture"] == ("llama" if "llama" in model else "qwen2") and g["tensor_types"] == types
    # dequantised (and for llama un-permuted) back into transformers; a wrong tensor map or
    # permutation scrambles the logits (max_rel ~ 1), f16 rounding does not; top-1 may flip where
    # the few-step tiny model has near-ties
    assert g["logit_error_dequantized"]["top1_agree"] >= top1 and g["logit_error_dequantized"]["max_rel"] < rel


def test_a_template_mismatch_stops_the_export_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run("a"), run)
    gen = run / "adapter" / "generation_config.json"
    gen.write_text(json.dumps({**json.loads(gen.read_text()), "eos_token_id": 0}))
    res = run_cli("export", str(run), "--merge", "-o", str(tmp_path / "out"), env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 2 and "mismatch" in res.stderr and "set eos_token_id to [2]" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".tmp-export-*"))


def test_refusals(tmp_path):
    from danlu.errors import UserError

    run = trained_run("a")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        export_run(str(run), tmp_path / "full", ExportOptions(merge=True))
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(UserError, match="nothing to export"):
        export_run(str(run), tmp_path / "o", ExportOptions())
    with pytest.raises(UserError, match="int8 or int4"):
        export_run(str(run), tmp_path / "o", ExportOptions(quantize="int3"))
    with pytest.raises(UserError, match="not a danlu run"):
        export_run(str(tmp_path), tmp_path / "o", ExportOptions(merge=True))
