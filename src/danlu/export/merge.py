"""`danlu export RUN --merge`: fold the adapter into the base and write a plain Hugging Face
directory (safetensors, tokenizer with the chat template, generation_config.json whose
eos_token_id are the run's stop tokens) that transformers and vLLM load without danlu.

Everything is computed in fp32 on the CPU, so the merged model's logits can be compared with
the adapter model's: they must agree within MERGE_TOLERANCE, or the export stops."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from danlu.errors import DanluError, UserError
from danlu.export.check import TrainedChat, trained_chat

log = logging.getLogger(__name__)

MERGE_TOLERANCE = 1e-4  # max |logit difference|, fp32, merged vs adapter model
# chat prompts for the logit comparisons (rendered with the run's own template)
PROBES = [
    [{"role": "user", "content": "Hello! Who are you?"}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "用一句话介绍你自己。"}],
    [{"role": "user", "content": "List three colours, then stop."}],
]
PLAIN_PROBE = "The quick brown fox jumps over the lazy dog. 敏捷的棕色狐狸跳过了懒狗。"


@dataclass
class Source:
    """A run's artefact, loaded in fp32 on the CPU for export."""

    artefact: Path
    info: dict
    tokenizer: object
    model: object  # the adapter model (PeftModel) or a full model
    trained: TrainedChat

    @property
    def is_adapter(self) -> bool:
        return self.info.get("artefact", "adapter") == "adapter"


def open_source(target: str) -> Source:
    import torch

    from danlu.infer.load import find_artefact, load_for_inference

    artefact = find_artefact(target)
    if artefact is None:
        raise UserError(f"{target} is not a danlu run or artefact (no danlu.json)",
                        hint="give a run directory (with adapter/ or model/) or the artefact folder itself")
    info = json.loads((artefact / "danlu.json").read_text(encoding="utf-8"))
    if info.get("task", "causal_lm") != "causal_lm":
        raise UserError(f"{artefact} is a {info['task']} model; export writes causal language models only")
    loaded = load_for_inference(str(artefact), dtype=torch.float32, device="cpu")
    trained = trained_chat(artefact, loaded.tokenizer, info)
    return Source(artefact, info, loaded.tokenizer, loaded.model, trained)


def probe_ids(tokenizer, trained: TrainedChat) -> list[list[int]]:
    """Token ids of the probe prompts: chat prompts through the run's template, plus plain text."""
    texts = []
    if trained.template is not None:
        texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in PROBES]
    texts.append(PLAIN_PROBE)
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def logits_of(model, prompts: list[list[int]]):
    """fp32 logits (T, V) of each prompt, one prompt at a time (no padding effects)."""
    import torch

    out = []
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids], device=model.device)
            out.append(model(input_ids=x).logits[0].float().cpu())
    return out


def logit_error(reference, other) -> dict:
    """max / mean absolute logit difference, the max relative to the largest |logit|, and the
    share of positions whose top-1 token agrees."""
    import torch

    a, b = torch.cat(reference), torch.cat(other)
    diff = (a - b).abs()
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "max_rel": float(diff.max() / a.abs().max().clamp_min(1e-12)),
        "top1_agree": float((a.argmax(-1) == b.argmax(-1)).float().mean()),
        "positions": int(a.shape[0]),
    }


def merged_model(source: Source, prompts) -> tuple[object, list, dict]:
    """Fold the adapter into the base (fp32). Returns (model, reference logits, merge error)."""
    reference = logits_of(source.model, prompts)
    if not source.is_adapter:
        return source.model, reference, {"max_abs": 0.0, "note": "full fine-tune: nothing to merge"}
    from danlu.methods.registry import METHODS

    method = METHODS.get(source.info["method"]["name"]).model_validate(source.info["method"])
    if not method.can_merge:
        raise UserError(f"method {method.name!r} cannot be folded into the base model",
                        hint=f"serve the adapter as it is: danlu serve {source.artefact.parent}")
    model = method.merge(source.model)
    error = logit_error(reference, logits_of(model, prompts))
    if error["max_abs"] > MERGE_TOLERANCE:
        raise DanluError(f"the merged model's logits differ from the adapter model's by {error['max_abs']:.2e} "
                         f"(> {MERGE_TOLERANCE:g} in fp32); the merge is wrong, nothing was written")
    return model, reference, error


def base_dtype(info: dict):
    """The dtype the base model was published in (config.json), fp32 when it does not say."""
    import torch
    from transformers import AutoConfig

    from danlu.models.load import resolve_model_path

    try:
        cfg = AutoConfig.from_pretrained(resolve_model_path(info["base_model"]), revision=info.get("revision"))
    except (OSError, ValueError):
        return torch.float32
    dtype = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def write_hf_dir(model, source: Source, out: Path, dtype) -> None:
    """safetensors weights in `dtype`, tokenizer (chat template), generation config, danlu.json."""
    from transformers import GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    model = model.to(dtype)
    model.config.dtype = dtype
    model.save_pretrained(str(out), safe_serialization=True)
    source.tokenizer.save_pretrained(str(out))
    gen_path = source.artefact / "generation_config.json"
    gen = GenerationConfig.from_pretrained(str(source.artefact)) if gen_path.is_file() else GenerationConfig()
    gen.eos_token_id = source.trained.stop_token_ids
    gen.pad_token_id = source.tokenizer.pad_token_id
    gen.save_pretrained(str(out))
    meta = {**source.info, "artefact": "model", "exported_from": str(source.artefact)}
    (out / "danlu.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    for stray in ("README.md", "adapter_config.json"):
        (out / stray).unlink(missing_ok=True)


def reload_error(out: Path, reference, prompts) -> dict:
    """Load the written directory with plain transformers (no danlu, no PEFT) and compare."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32, use_safetensors=True)
    try:
        return logit_error(reference, logits_of(model.eval(), prompts))
    finally:
        del model


def dir_size(path: Path, pattern: str = "*") -> int:
    return sum(f.stat().st_size for f in Path(path).glob(pattern) if f.is_file())


def fresh_dir(out: Path, overwrite: bool) -> Path:
    """A temporary sibling folder to write into; renamed to `out` when everything passed."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty", where="--output",
                        hint="choose another folder or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-export-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp
