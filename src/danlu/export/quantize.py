"""`danlu export RUN --quantize int8|int4`: weight-only quantisation for deployment with
bitsandbytes (LLM.int8 / NF4), written as a Hugging Face directory whose config.json carries the
quantization_config, so transformers and vLLM load it as a bitsandbytes checkpoint.

Only the linear layers of the decoder are quantised; embeddings, norms and the (often tied)
output head keep the export dtype, which is why a tiny model with a large vocabulary shrinks
far less than 4x or 8x. The report gives the size on disk and the logit error against the
unquantised merged model. (torchao is the other option DESIGN names; importing it breaks
`import transformers` on these machines, so bitsandbytes it is.)"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

from danlu.errors import UserError

log = logging.getLogger(__name__)

KINDS = ("int8", "int4")
HF_SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                 "vocab.json", "merges.txt", "tokenizer.model", "generation_config.json", "danlu.json")


def bnb_config(kind: str, dtype):
    from transformers import BitsAndBytesConfig

    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if kind == "int4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=dtype)
    raise UserError(f"unknown quantisation {kind!r}", where="--quantize", hint="choose int8 or int4")


def require_bitsandbytes() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError("--quantize needs bitsandbytes", hint="pip install 'danlu[export]'") from None


def quantize_dir(merged: Path, out: Path, kind: str, dtype):
    """Load the merged directory with a bitsandbytes config and save it to `out`; returns the
    quantised model (kept in memory for the error measurement)."""
    import torch
    from transformers import AutoModelForCausalLM

    require_bitsandbytes()
    device_map = {"": 0} if torch.cuda.is_available() else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "inputs will be cast to float16" on every int8 matmul
        model = AutoModelForCausalLM.from_pretrained(
            str(merged), quantization_config=bnb_config(kind, dtype), dtype=dtype, device_map=device_map,
            use_safetensors=True)
        model.save_pretrained(str(out), safe_serialization=True)
    from danlu.models.load import fit_bnb_cpu_packing

    fit_bnb_cpu_packing(model)
    for name in HF_SIDE_FILES:
        if (merged / name).is_file():
            shutil.copy2(merged / name, out / name)
    return model.eval()


def quantized_logits(model, prompts):
    from danlu.export.merge import logits_of

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return logits_of(model, prompts)
