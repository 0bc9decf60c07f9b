"""The fp32 noise floor behind export's merge check (docs/export.md): for a LoRA run, the
adapter model vs its merged model, and the same model between batch size 1 and 2 (each probe
prompt alone, then stacked twice in one batch: no padding, only a different matmul blocking).

    PYTHONPATH=src python bench/merge_noise.py RUN_DIR [--json]"""

from __future__ import annotations

import json
import sys


def batch_noise(model, prompts):
    import torch

    from danlu.export.merge import logit_error, logits_of

    one = logits_of(model, prompts)
    two = []
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids, ids], device=model.device)
            two.append(model(input_ids=x).logits[1].float().cpu())
    return logit_error(one, two)


def main(run: str) -> dict:
    import torch

    from danlu.export import merge

    torch.manual_seed(0)
    source = merge.open_source(run)
    prompts = merge.probe_ids(source.tokenizer, source.trained)
    out = {"run": run, "base_model": source.info.get("base_model"), "positions": sum(map(len, prompts)),
           "threads": torch.get_num_threads(), "adapter_batch_1_vs_2": batch_noise(source.model, prompts)}
    model, _, out["merge_adapter_vs_merged"] = merge.merged_model(source, prompts)
    out["merged_batch_1_vs_2"] = batch_noise(model, prompts)
    return out


if __name__ == "__main__":
    result = main(sys.argv[1])
    print(json.dumps(result, indent=2))
