"""`danlu export`: one run's artefact → a merged Hugging Face directory, a bitsandbytes-quantised
one, and/or a GGUF file with an Ollama Modelfile, in one output folder:

  OUT/config.json, model.safetensors, tokenizer*, chat_template.jinja, generation_config.json
                               (--merge, or --quantize int8|int4: then the weights are quantised)
  OUT/model-<type>.gguf (f16 q8_0 q4_k_m q5_k_m q6_k), OUT/Modelfile                   (--gguf)
  OUT/export_report.json       sizes, logit errors, the template / EOS checks

Everything is written into a temporary sibling folder and renamed into place only when every
check passed, so OUT never holds half an export."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from danlu.diskspace import guard_save, tensor_bytes
from danlu.errors import DanluError, UserError
from danlu.export import check, merge

log = logging.getLogger(__name__)
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class ExportOptions:
    merge: bool = False
    quantize: str | None = None  # int8 | int4
    gguf: bool = False
    gguf_type: str = "f16"  # f16 | q8_0 | q4_k_m | q5_k_m | q6_k
    dtype: str = "auto"  # of the merged weights on disk; auto = the base model's
    overwrite: bool = False

    def validate(self) -> None:
        from danlu.export.gguf import GGUF_TYPES, LLAMA_CPP_TYPES, require_llama_cpp
        from danlu.export.quantize import KINDS

        if not (self.merge or self.quantize or self.gguf):
            raise UserError("nothing to export", hint="add --merge, --quantize int8|int4 and/or --gguf")
        if self.quantize is not None and self.quantize not in KINDS:
            raise UserError(f"unknown quantisation {self.quantize!r}", where="--quantize", hint="choose int8 or int4")
        if self.gguf_type not in GGUF_TYPES:
            raise UserError(f"unknown GGUF type {self.gguf_type!r}", where="--gguf-type",
                            hint="choose " + ", ".join(GGUF_TYPES))
        if self.gguf and self.gguf_type in LLAMA_CPP_TYPES:
            require_llama_cpp(self.gguf_type)
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}", where="--dtype", hint="choose " + ", ".join(DTYPES))


def export_run(target: str, out: str | Path, opts: ExportOptions) -> dict:
    opts.validate()
    if opts.quantize:
        from danlu.export.quantize import require_bitsandbytes

        require_bitsandbytes()
    _refuse_vision(target, opts)
    source = merge.open_source(target)  # also checks template / EOS of the artefact itself
    prompts = merge.probe_ids(source.tokenizer, source.trained, source.processor)
    step = _export_steps(opts)
    step.next("merge and compare logits")
    model, adapter_logits, merge_error = merge.merged_model(source, prompts)
    reference = merge.logits_of(model, prompts)  # the unquantised merged model, fp32
    out = Path(out)
    tmp = merge.fresh_dir(out, opts.overwrite)
    from danlu.models.chain import describe

    report = {"source": str(source.artefact), "base_model": source.info.get("base_model"),
              "chain": describe(source.info) or None,
              "adapter_bytes": merge.dir_size(source.artefact, "*.safetensors") if source.is_adapter else None,
              "template": source.trained.source, "turn_end": source.trained.turn_end,
              "stop_token_ids": source.trained.stop_token_ids, "probe_positions": sum(len(p) for p in prompts)}
    try:
        with guard_save(out, what="the export", needed_bytes=lambda: tensor_bytes(model), cleanup=tmp,
                        after=f"Nothing was written to {out}."):
            _write(model, source, tmp, opts, report, reference, prompts, adapter_logits, merge_error, step)
        _replace(tmp, out)
        step.close()
    except BaseException:
        step.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report["output"] = str(out)
    return report


def _refuse_vision(target: str, opts: ExportOptions) -> None:
    """A vision-language run exports with --merge only (said before anything loads)."""
    from danlu.infer.load import find_artefact
    from danlu.infer.vision import is_vision_folder, is_vision_model

    if not (opts.gguf or opts.quantize):
        return
    artefact = find_artefact(target)
    if artefact is None:
        return
    info = json.loads((artefact / "danlu.json").read_text(encoding="utf-8"))
    if is_vision_folder(artefact) or is_vision_model(info.get("base_model", "")):
        raise UserError(f"{target} is a vision-language model: export writes it with --merge only",
                        where="--gguf" if opts.gguf else "--quantize",
                        hint="drop --gguf / --quantize (a GGUF would need llama.cpp's separate vision projector "
                             "file, which danlu does not write yet)")


def _export_steps(opts: ExportOptions):
    from danlu.progress import Stages

    return Stages("export", ["merge and compare logits", *(["GGUF"] if opts.gguf else []),
                             *(["merged weights"] if opts.merge or opts.quantize else []),
                             *(["quantise"] if opts.quantize else [])])


def _write(model, source, tmp: Path, opts, report, reference, prompts, adapter_logits, merge_error, step) -> None:
    """Every file of the export into `tmp` (renamed into place by the caller); `step` is the progress bar."""
    if opts.gguf:  # first: it reads the fp32 weights, write_hf_dir may cast them
        step.next(f"GGUF {opts.gguf_type}")
        report["gguf"] = _gguf(model, source, tmp, opts.gguf_type, reference, prompts)
    if opts.merge or opts.quantize:
        step.next("write and reload merged weights")
        report["merge"] = _merged(model, source, tmp, opts, adapter_logits, merge_error, prompts)
    if opts.quantize:
        step.next(f"quantise {opts.quantize}")
        report["quantize"] = _quantized(source, tmp, opts, reference, prompts)
    (tmp / "export_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")


def _dtype(opts: ExportOptions, source):
    import torch

    return merge.base_dtype(source.info) if opts.dtype == "auto" else getattr(torch, opts.dtype)


def _merged(model, source, tmp: Path, opts, adapter_logits, merge_error, prompts) -> dict:
    import torch

    dtype = _dtype(opts, source)
    hf = tmp / ".merged" if opts.quantize else tmp
    merge.write_hf_dir(model, source, hf, dtype)
    reload = merge.reload_error(hf, adapter_logits, prompts)
    why = merge.merge_verdict(reload) if dtype == torch.float32 else None
    if why:
        raise DanluError(f"the merged directory reloaded with plain transformers does not compute what the adapter "
                         f"model computes: {why}; nothing was written")
    return {"dtype": str(dtype).replace("torch.", ""), "merge_error": merge_error, "reload_error": reload,
            "bytes": merge.dir_size(hf, "*.safetensors"), "check": check.check_hf_dir(hf, source.trained)}


def _quantized(source, tmp: Path, opts, reference, prompts) -> dict:
    from danlu.export.quantize import quantize_dir, quantized_logits

    merged_dir = tmp / ".merged"
    qmodel = quantize_dir(merged_dir, tmp, opts.quantize, _dtype(opts, source))
    error = merge.logit_error(reference, quantized_logits(qmodel, prompts))
    del qmodel
    shutil.rmtree(merged_dir)
    return {"kind": opts.quantize, "method": "bitsandbytes " + ("LLM.int8" if opts.quantize == "int8" else "NF4"),
            "bytes": merge.dir_size(tmp, "*.safetensors"), "logit_error_vs_unquantised": error,
            "check": check.check_hf_dir(tmp, source.trained)}


def _gguf(model, source, tmp: Path, kind: str, reference, prompts) -> dict:
    from danlu.export import gguf, ollama

    name = f"model-{kind}.gguf"
    path = tmp / name
    mapping = gguf.write_gguf(model, source.tokenizer, source.trained, path, kind, _model_name(source))
    read = gguf.verify(path, model, source.tokenizer, source.trained, mapping, kind)
    checked = check.check_gguf_fields(path, read["fields"], source.trained)
    modelfile = ollama.write_modelfile(tmp, name, source.trained, source.tokenizer, source=str(source.artefact))
    check.check_modelfile(modelfile, source.trained, source.tokenizer)
    error = merge.logit_error(reference, merge.logits_of(_dequantized(path, mapping, model.config), prompts))
    return {"file": name, "type": kind, "bytes": path.stat().st_size, "tensors": read["tensors"],
            "tensor_types": read["tensor_types"], "architecture": read["fields"].get("general.architecture"),
            "tokenizer_pre": read["fields"].get("tokenizer.ggml.pre"), "check": checked,
            "ollama_template": ollama.template_family(source.trained.template),
            "logit_error_dequantized": error}


def _dequantized(path: Path, mapping: dict, config):
    """A transformers model holding the GGUF file's weights (dequantised to fp32)."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from danlu.export.gguf import dequantized_state_dict

    config = copy.deepcopy(config)
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(dequantized_state_dict(path, mapping, config), strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise DanluError(f"the GGUF file does not map back onto the model: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    model.tie_weights()
    return model.eval()


def _model_name(source) -> str:
    run = source.artefact.parent.name if source.artefact.name in ("adapter", "model") else source.artefact.name
    return f"{run} ({source.info.get('base_model', '')})"


def _replace(tmp: Path, out: Path) -> None:
    from danlu.files import normal_modes

    normal_modes(tmp)  # a deployment artefact others must read (safetensors leaves 0600)
    if out.exists():
        old = out.parent / f".old-export-{out.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
