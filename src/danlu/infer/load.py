"""Load what `danlu chat/eval/serve/export` are pointed at: a run directory, an artefact
directory (adapter/ or model/), or a plain model (hub id, local directory, builtin:*)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from danlu.errors import UnsafeFileError, UserError
from danlu.infer.vision import is_vision_folder, is_vision_model, load_processor


@dataclass
class Loaded:
    model: object
    tokenizer: object
    stop_token_ids: list[int]
    info: dict = field(default_factory=dict)  # danlu.json of the artefact ({} for a plain model)
    source: str = ""
    base_model: str = ""
    processor: object = None  # a vision-language model's AutoProcessor (None: text only)

    @property
    def vision(self) -> bool:
        return self.processor is not None


def find_artefact(target: str) -> Path | None:
    """The artefact folder of a run dir (adapter/ or model/), or `target` itself if it is one."""
    p = Path(target)
    if (p / "danlu.json").is_file():
        return p
    for name in ("adapter", "model"):
        if (p / name / "danlu.json").is_file():
            return p / name
    if (p / "config.yaml").is_file() and (p / "checkpoints").is_dir():
        raise UserError(f"run {p} has no final artefact yet (training did not finish)",
                        hint=f"resume it with: danlu train {p}/config.yaml --resume")
    return None


def refuse_pickles(folder: Path) -> None:
    """An adapter or model folder must hold safetensors weights, never pickles."""
    if list(folder.glob("*.safetensors")):
        return
    pickles = [f.name for f in folder.iterdir() if f.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    if pickles:
        raise UnsafeFileError(
            f"{folder} holds only pickle weights ({', '.join(pickles)}); danlu loads safetensors only",
            hint="convert them to safetensors in a sandbox, from a source you trust",
        )
    raise UserError(f"{folder} holds no weights (*.safetensors)")


def head_kwargs(info: dict, tok) -> dict:
    """The size (and label names) of a classification or reward head, for loading its base model
    under an adapter: the adapter holds the trained head, the base config does not know its size."""
    if info.get("task", "causal_lm") in ("causal_lm", "image_text"):
        return {}
    kwargs = {"pad_token_id": tok.pad_token_id}
    labels = info.get("labels")
    if labels:
        kwargs.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={name: i for i, name in enumerate(labels)})
    elif info.get("num_labels"):
        kwargs["num_labels"] = int(info["num_labels"])
    return kwargs


MEDIA_TASKS = {"image_cls": ("an image classifier", "transformers.pipeline('image-classification', model=...)"),
               "asr": ("a speech recogniser", "WhisperForConditionalGeneration.from_pretrained(...).generate(input_"
                       "features) with its WhisperProcessor")}


def refuse_non_text(artefact: Path, info: dict) -> None:
    """Chat, serve, eval and export run language models; an image classifier or a speech
    recogniser (stage classify on images, stage asr) is said to be one, with what to use."""
    what = MEDIA_TASKS.get(info.get("task", ""))
    if what is None:
        return
    from danlu.errors import UserError

    raise UserError(f"{artefact} is {what[0]} (stage {info.get('stage')}); danlu chat, serve, eval and export "
                    "run language models", where=str(artefact),
                    hint=f"its held-out figures are in the run's run_info.json; to use it, load the folder with "
                         f"{what[1]} (an adapter: PeftModel on its base)")


def load_for_inference(target: str, *, dtype=None, device: str | None = None, merge: bool = False,
                       task: str | None = None) -> Loaded:
    """`task` is the head to load a plain model with (causal_lm by default; seq_cls for a reward
    model); an artefact's own danlu.json decides for it."""
    import torch

    from danlu.models.load import load_model, load_tokenizer
    from danlu.progress import stages

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    artefact = find_artefact(target)
    if artefact is None:  # a plain model: its own template (or danlu's default)
        from danlu.chat.templates import resolve_template

        vision = task is None and is_vision_model(target)
        with stages(f"loading {target}", ["tokenizer", "model"]) as step:
            step.next("tokenizer")
            tok = load_tokenizer(target)
            tpl = resolve_template(tok, "auto")
            step.next("model")
            model = load_model(target, task="image_text" if vision else task or "causal_lm", dtype=dtype)
            model = contiguous_head_input(model.to(device).eval())
        processor = load_processor(target) if vision else None
        return Loaded(model, tok, tpl.stop_token_ids(), {}, target, target, processor)
    info = json.loads((artefact / "danlu.json").read_text(encoding="utf-8"))
    refuse_non_text(artefact, info)
    refuse_pickles(artefact)
    names = ["tokenizer", "model"] if info.get("artefact") == "model" else \
        ["tokenizer", "base model", *(["stacked adapters"] if info.get("stacked") else []), "adapter",
         *(["merge"] if merge else [])]
    with stages(f"loading {target}", names) as step:
        step.next("tokenizer")
        model, tok = _load_artefact(artefact, info, dtype=dtype, merge=merge, step=step)
    stop = info.get("stop_token_ids") or [tok.eos_token_id]
    if not getattr(model, "is_quantized", False):
        model = model.to(device)  # bitsandbytes places quantised weights itself
    model = contiguous_head_input(model.eval())
    processor = None
    if _vision_artefact(artefact, info):
        processor = load_processor(str(artefact), fallback=info.get("base_model"))
    return Loaded(model, tok, stop, info, str(artefact), info.get("base_model", ""), processor)


def contiguous_head_input(model):
    """Hand the output layer a contiguous input. Generation projects only the last position, a
    strided view of the hidden states, and torch's CPU linear is slow on a strided 3-D input whose
    weight does not require grad: 1.2 s instead of 0.18 s in fp32, and 42 s instead of 0.03 s in
    bf16, for 52 rows through gemma-3's 262k-entry head (torch 2.13, measured). The copy is one
    row per sequence."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and not getattr(head, "_danlu_contiguous", False):
        head.register_forward_pre_hook(_make_contiguous)
        head._danlu_contiguous = True
    return model


def _make_contiguous(module, args):
    if args and hasattr(args[0], "is_contiguous") and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:])
    return None


def _vision_artefact(artefact: Path, info: dict) -> bool:
    if info.get("task", "causal_lm") not in ("causal_lm", "image_text"):
        return False
    return is_vision_folder(artefact) or is_vision_model(info.get("base_model", ""))


def _model_task(artefact: Path, info: dict) -> str:
    """The head to load: a VLM loads as image_text whatever task its danlu.json names."""
    return "image_text" if _vision_artefact(artefact, info) else info.get("task", "causal_lm")


def _load_artefact(artefact: Path, info: dict, *, dtype, merge: bool, step):
    from danlu.models.load import load_model, load_tokenizer

    tok = load_tokenizer(str(artefact))
    trust = bool(info.get("trust_remote_code"))
    task = _model_task(artefact, info)
    if info.get("artefact") == "model":
        step.next("model")
        return load_model(str(artefact), task=task, dtype=dtype, trust_remote_code=trust), tok
    from danlu.methods.registry import METHODS

    method_cfg = info["method"]
    method = METHODS.get(method_cfg["name"]).model_validate(method_cfg)
    if merge:
        method.require_mergeable()  # say why before loading anything
    # the base as it was trained on: a QLoRA adapter goes back onto the same 4-bit weights
    step.next("base model")
    base = load_model(info["base_model"], task=task, dtype=dtype, revision=info.get("revision"),
                      trust_remote_code=trust, **head_kwargs(info, tok), **method.load_kwargs())
    if info.get("stacked"):  # adapters this one was trained on top of, merged into the base first
        from danlu.models.chain import stacked_dirs
        from danlu.methods.stack import merge_below

        step.next("stacked adapters")
        base = merge_below(base, stacked_dirs(artefact, info))
    step.next("adapter")
    model = method.load_trained(base, artefact)
    if merge:
        step.next("merge")
        model = method.merge(model)
    return model, tok
