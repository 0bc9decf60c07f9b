"""`danlu export RUN --merge`: fold the adapter into the base and write a plain Hugging Face
directory (safetensors, tokenizer with the chat template, generation_config.json whose
eos_token_id are the run's stop tokens) that transformers and vLLM load without danlu.

Everything is computed in fp32 on the CPU, so the merged model's logits can be compared with
the adapter model's. The check is relative to the logits' scale: max |Δlogit| / max |logit| must
stay within MERGE_TOLERANCE, and the top-1 token must agree on every probe position except near
ties (see merge_verdict); otherwise the export stops."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from danlu.errors import DanluError, UserError
from danlu.export.check import TrainedChat, trained_chat

log = logging.getLogger(__name__)

# max |Δlogit| / max |logit|, fp32, merged vs adapter model. Folding W + BA into one matrix only
# reorders fp32 sums: measured on real SmolLM2-135M (largest |logit| 41) a correct merge differs by
# 3.0e-6 of the largest logit (issue 18 saw 4.6e-6, and 2e-6 between batch size 1 and 2; here
# batching and thread count left the logits bit-identical: docs/export.md, bench/merge_noise.py);
# gemma-3-270m 2.9e-6. 1e-4 leaves ~30x that noise floor; a wrong merge (missing, doubled or
# mis-scaled adapter) is 1e-2 and more.
MERGE_TOLERANCE = 1e-4
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
    processor: object = None  # a vision-language model's processor (written beside the weights)

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
    return Source(artefact, info, loaded.tokenizer, loaded.model, trained, loaded.processor)


def probe_ids(tokenizer, trained: TrainedChat, processor=None) -> list:
    """The probe prompts: token ids of chat prompts through the run's template, plus plain text;
    for a vision-language model also two image questions (the processor's inputs, a dict)."""
    texts = []
    if trained.template is not None:
        texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in PROBES]
    texts.append(PLAIN_PROBE)
    prompts: list = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    if processor is not None:
        prompts += image_probes(processor)
    return prompts


def image_probes(processor) -> list[dict]:
    """Two image questions (drawn here: a red square on white, a blue disc on black)."""
    from PIL import Image, ImageDraw

    from danlu.infer.vision import encode

    out = []
    for fill, back, shape in (((220, 30, 30), (255, 255, 255), "rectangle"), ((30, 60, 220), (0, 0, 0), "ellipse")):
        img = Image.new("RGB", (64, 64), back)
        getattr(ImageDraw.Draw(img), shape)((12, 12, 52, 52), fill=fill)
        question = [{"role": "user", "content": [{"type": "image", "image": img},
                                                 {"type": "text", "text": "What is in the picture?"}]}]
        out.append(dict(encode(processor, question)))
    return out


def logits_of(model, prompts: list):
    """fp32 logits (T, V) of each prompt (token ids, or a processor's inputs), one at a time (no
    padding effects)."""
    import torch

    out = []
    with torch.no_grad():
        for prompt in prompts:
            if isinstance(prompt, dict):
                inputs = {k: v.to(model.device, model.dtype) if v.is_floating_point() else v.to(model.device)
                          for k, v in prompt.items()}
                out.append(model(**inputs).logits[0].float().cpu())
                continue
            x = torch.tensor([prompt], device=model.device)
            out.append(model(input_ids=x).logits[0].float().cpu())
    return out


def logit_error(reference, other, tolerance: float = MERGE_TOLERANCE) -> dict:
    """max / mean absolute logit difference, the max relative to the largest |logit| (`scale`),
    the share of positions whose top-1 token agrees, and the disagreements that are not near ties:
    positions where the reference's top-1 leads the other model's top-1 by more than
    2 x tolerance x scale (an error within the tolerance can swap no wider gap)."""
    import torch

    a, b = torch.cat(reference), torch.cat(other)
    diff = (a - b).abs()
    scale = float(a.abs().max().clamp_min(1e-12))
    top_a, top_b = a.argmax(-1), b.argmax(-1)
    gap = a.gather(-1, top_a[:, None])[:, 0] - a.gather(-1, top_b[:, None])[:, 0]
    disagree = top_a != top_b
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "scale": scale,
        "max_rel": float(diff.max()) / scale,
        "top1_agree": float((~disagree).float().mean()),
        "top1_disagree_beyond_ties": int((disagree & (gap > 2 * tolerance * scale)).sum()),
        "positions": int(a.shape[0]),
    }


def merge_verdict(error: dict, tolerance: float = MERGE_TOLERANCE) -> str | None:
    """None when `error` (from logit_error) is fp32 rounding; else why it is not, with the numbers."""
    if error["max_rel"] <= tolerance and error["top1_disagree_beyond_ties"] == 0:
        return None
    return (f"max |Δlogit| {error['max_abs']:.2e} against a largest |logit| of {error['scale']:.3g} is "
            f"{error['max_rel']:.1e} of the logits' scale (fp32 rounding stays below {tolerance:g}; a correct "
            f"merge of SmolLM2-135M measured 3e-6); the top token differs on {error['top1_disagree_beyond_ties']} of "
            f"{error['positions']} probe positions that are not near ties")


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
    why = merge_verdict(error)
    if why:
        raise DanluError(f"the merged model does not compute what the adapter model computes: {why}. "
                         "That is more than rounding; nothing was written.\n  hint: serve the adapter as it is "
                         f"(danlu serve {source.artefact.parent}) and report this with its adapter/danlu.json")
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
    if source.processor is not None:  # image processor + processor config (+ the same tokenizer and template)
        from danlu.models.processor import save_processor

        save_processor(source.processor, out)
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
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from danlu.infer.vision import is_vision_folder

    cls = AutoModelForImageTextToText if is_vision_folder(out) else AutoModelForCausalLM
    model = cls.from_pretrained(str(out), dtype=torch.float32, use_safetensors=True)
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
