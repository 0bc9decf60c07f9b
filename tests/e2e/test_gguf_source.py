"""A `.gguf` file (or a folder holding one) as `model.name_or_path`: a tiny trained model exported
with `danlu export --gguf f16` is dequantised once into danlu's cache and gives the same logits,
tokens, chat template and EOS as the model it came from; `danlu train` and `danlu chat` run on it;
an architecture transformers cannot read from GGUF stops with exit 2 naming it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from danlu.export.run import ExportOptions, export_run
from tests.conftest import QA, run_cli, tiny_config, write_jsonl
from tests.unit.serve.runs import one_torch_thread, trained_run

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
PROMPT = "<|im_start|>user\nWhat is FlowDesk?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(merged HF folder, a folder holding only its f16 GGUF)."""
    out = tmp_path_factory.mktemp("gguf") / "export"
    export_run(str(trained_run("llama", model="builtin:tiny-llama")), out,
               ExportOptions(merge=True, gguf=True, gguf_type="f16"))
    only = out.parent / "only-gguf"
    only.mkdir()
    shutil.copy(out / "model-f16.gguf", only / "model-f16.gguf")
    return out, only


def test_a_gguf_file_loads_as_the_model_it_was_exported_from(exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from danlu.models.gguf import SOURCE_FILE
    from danlu.models.load import load_model, load_tokenizer, resolve_model_path

    merged, only = exported
    folder = resolve_model_path(str(only / "model-f16.gguf"))
    assert resolve_model_path(str(only)) == folder, "the file and its folder are one source"
    assert json.loads((__import__("pathlib").Path(folder) / SOURCE_FILE).read_text())["architecture"] == "llama"
    ref_tok = AutoTokenizer.from_pretrained(str(merged))
    tok = load_tokenizer(str(only))
    assert tok(PROMPT, add_special_tokens=False)["input_ids"] == ref_tok(PROMPT, add_special_tokens=False)["input_ids"]
    assert tok.chat_template == ref_tok.chat_template and tok.eos_token == "<|im_end|>"
    ids = ref_tok(PROMPT, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        ref = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32)(ids).logits
        got = load_model(str(only), dtype=torch.float32)(ids).logits
    assert (got - ref).abs().max() / ref.abs().max() < 0.01  # f16 rounding, not a scrambled tensor
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.95


def test_the_converted_folder_is_cached_and_keyed_by_content(exported, tmp_path):
    from danlu.models.gguf import converted_path, file_key

    _, only = exported
    first = converted_path(str(only))
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert converted_path(str(only)) == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    copy = tmp_path / "changed.gguf"
    data = bytearray((only / "model-f16.gguf").read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last tensor
    copy.write_bytes(bytes(data))
    assert file_key(copy) != file_key(only / "model-f16.gguf")
    assert not list(first.parent.glob(".*")), "no temporary folder left behind"


def test_train_and_chat_on_a_gguf_source(exported, tmp_path):
    _, only = exported
    data = write_jsonl(tmp_path / "qa.jsonl", [{"instruction": q, "input": "", "output": a} for q, a in QA])
    cfg = tiny_config(tmp_path, data, model={"name_or_path": str(only / "model-f16.gguf")},
                      train={"max_steps": 2, "batch_size": 4, "save_steps": 1000})
    res = run_cli("train", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_cli("chat", str(tmp_path / "run"), "--prompt", "What is FlowDesk?", "--max-new-tokens", "4")
    assert res.returncode == 0, res.stderr[-3000:]


def test_an_architecture_transformers_cannot_read_exits_2_naming_it(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(str(path), "rwkv7")
    w.add_block_count(1)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b"])
    w.add_tensor("token_embd.weight", np.zeros((2, 4), dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    data = write_jsonl(tmp_path / "qa.jsonl", [{"instruction": "q", "input": "", "output": "a"}])
    res = run_cli("train", str(tiny_config(tmp_path, data, model={"name_or_path": str(path)})))
    assert res.returncode == 2 and "rwkv7" in res.stderr and "model.name_or_path" in res.stderr
    assert "Traceback" not in res.stderr
