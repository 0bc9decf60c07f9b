"""The fp32 noise floor behind export's merge check (docs/export.md): for a LoRA run, the
adapter model vs its merged model, and the same model between batch size 1 and 2: each probe
prompt alone, then in a batch of 2 with the longest probe (right padding, attention mask), as a
server batches requests; and between 1 and 2 torch threads.

    PYTHONPATH=src python bench/merge_noise.py RUN_DIR [--json]"""

from __future__ import annotations

import json
import sys


def batch_noise(model, prompts):
    import torch

    from danlu.export.merge import logit_error, logits_of

    one = logits_of(model, prompts)
    longest = max(prompts, key=len)
    two = []
    with torch.no_grad():
        for ids in prompts:
            pad = len(longest) - len(ids)
            x = torch.tensor([ids + [0] * pad, longest], device=model.device)
            mask = torch.tensor([[1] * len(ids) + [0] * pad, [1] * len(longest)], device=model.device)
            two.append(model(input_ids=x, attention_mask=mask).logits[0, : len(ids)].float().cpu())
    return logit_error(one, two)


def thread_noise(model, prompts):
    import torch

    from danlu.export.merge import logit_error, logits_of

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    one = logits_of(model, prompts)
    torch.set_num_threads(2)
    two = logits_of(model, prompts)
    torch.set_num_threads(before)
    return logit_error(one, two)


def main(run: str) -> dict:
    import torch

    from danlu.export import merge

    torch.manual_seed(0)
    source = merge.open_source(run)
    source.model.eval()
    prompts = merge.probe_ids(source.tokenizer, source.trained)
    out = {"run": run, "base_model": source.info.get("base_model"), "positions": sum(map(len, prompts)),
           "threads": torch.get_num_threads(), "adapter_batch_1_vs_2": batch_noise(source.model, prompts)}
    model, _, out["merge_adapter_vs_merged"] = merge.merged_model(source, prompts)
    out["merged_batch_1_vs_2"] = batch_noise(model, prompts)
    out["merged_threads_1_vs_2"] = thread_noise(model, prompts)
    return out


if __name__ == "__main__":
    result = main(sys.argv[1])
    print(json.dumps(result, indent=2))
