"""The real lm-eval harness (0.4.x) against a real `danlu serve`, offline: a local multiple-choice
task through `local-completions` (token-id and text requests; log-likelihoods from echo +
logprobs) scored like danlu's in-process reference, and a generation task through
`local-chat-completions`. Skipped when lm_eval is not installed (`danlu[test]` installs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT
from tests.e2e.test_serve import Server, free_port
from tests.unit.serve.runs import one_torch_thread, trained_run

lm_eval = pytest.importorskip("lm_eval")
one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

QUESTIONS = [
    {"question": "What is FlowDesk?", "choices": ["a help desk tool", "a fruit", "a river"], "answer": 0},
    {"question": "Is there a free trial?", "choices": ["no", "yes, 14 days", "only on Sundays"], "answer": 1},
    {"question": "How do I export data?", "choices": ["by fax", "you cannot", "Settings → Export"], "answer": 2},
    {"question": "2 + 2 =", "choices": ["4", "5", "22"], "answer": 0},
]
MC_TASK = """task: danlu_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
"""
GEN_TASK = """task: danlu_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{choices[answer]}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(server url, run, task folder) with `danlu serve RUN` running without an API key."""
    os.environ.setdefault("OPENAI_API_KEY", "none")  # lm-eval's chat model asks for one; the server has none
    tmp = tmp_path_factory.mktemp("lm-eval")
    data = tmp / "mc.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    (tmp / "danlu_mc.yaml").write_text(MC_TASK.format(data=data), encoding="utf-8")
    (tmp / "danlu_gen.yaml").write_text(GEN_TASK.format(data=data), encoding="utf-8")
    run = trained_run("a")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DANLU_API_KEY"}
    env.update(PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "danlu", "serve", str(run), "--port", str(port), "--threads", "1"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    srv = Server(f"http://127.0.0.1:{port}", {"a": run}, proc, tmp / "server.log")
    import time

    import httpx

    for _ in range(600):
        try:
            if srv.health()["status"] == "ok":
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    yield srv, run, tmp
    proc.terminate()
    proc.wait(timeout=20)


def evaluate(model: str, args: str, task: str, folder, **kw) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    return simple_evaluate(model=model, model_args=args, tasks=[task], task_manager=TaskManager(include_path=str(folder)),
                           log_samples=True, **kw)


def reference_scores(run) -> list[list[float]]:
    """danlu's own in-process scoring of the same requests (context, " " + choice), split into
    tokens as lm-eval does (whole string encoded, the context's tokens cut off)."""
    from danlu.eval.likelihood import option_logprobs
    from danlu.infer.load import load_for_inference

    loaded = load_for_inference(str(run), dtype=torch.float32, device="cpu")
    tok, out = loaded.tokenizer, []
    for q in QUESTIONS:
        context = f"Question: {q['question']}\nAnswer:"
        ctx = tok(context, add_special_tokens=False)["input_ids"]
        conts = [tok(context + " " + c, add_special_tokens=False)["input_ids"][len(ctx):] for c in q["choices"]]
        out.append([lp for lp, _ in option_logprobs(loaded.model, ctx, conts)])
    return out


@pytest.mark.parametrize("tokenized", [True, False])
def test_local_completions_multiple_choice_matches_danlus_own_scoring(setup, tokenized):
    srv, run, folder = setup
    args = (f"model=a,base_url={srv.url}/v1/completions,tokenizer_backend=huggingface,"
            f"tokenizer={run / 'adapter'},tokenized_requests={tokenized},num_concurrent=1,max_retries=1")
    out = evaluate("local-completions", args, "danlu_mc", folder)
    acc = out["results"]["danlu_mc"]["acc,none"]
    print(f"\nlm-eval local-completions tokenized_requests={tokenized}: acc {acc}")
    reference = reference_scores(run)
    samples = sorted(out["samples"]["danlu_mc"], key=lambda x: x["doc_id"])
    assert len(samples) == len(QUESTIONS)
    for sample, ref in zip(samples, reference):  # each option's log-likelihood, as lm-eval received it
        assert [r[0][0] for r in sample["resps"]] == pytest.approx(ref, abs=1e-4)
    right = sum(max(range(len(r)), key=r.__getitem__) == q["answer"] for r, q in zip(reference, QUESTIONS))
    assert acc == pytest.approx(right / len(QUESTIONS))


def test_local_chat_completions_generation_task(setup):
    srv, _, folder = setup
    args = f"model=a,base_url={srv.url}/v1/chat/completions,num_concurrent=1,max_retries=1"
    out = evaluate("local-chat-completions", args, "danlu_gen", folder, apply_chat_template=True)
    samples = out["samples"]["danlu_gen"]
    print(f"\nlm-eval local-chat-completions: exact_match {out['results']['danlu_gen']['exact_match,none']}")
    assert len(samples) == len(QUESTIONS) and all(isinstance(s["resps"][0][0], str) for s in samples)
