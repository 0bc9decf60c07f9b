"""LoRA and its variants as options of one method (PEFT): DoRA, rsLoRA, PiSSA/OLoRA init,
LoRA+ (a larger learning rate for B), and QLoRA (a 4/8-bit frozen base, bitsandbytes).
`qlora`, `dora`, `lora_plus`, `rslora` and `pissa` are shorthands that set those options."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from danlu.errors import ConfigError
from danlu.methods.base import MethodContext, invalid
from danlu.methods.peft_base import PEFT_TASK, PeftMethod
from danlu.methods.registry import register_method

log = logging.getLogger(__name__)
SHORTHANDS = {
    "qlora": {"quantize": "nf4"},
    "dora": {"use_dora": True},
    "lora_plus": {"lora_plus_ratio": 16.0},
    "rslora": {"use_rslora": True},
    "pissa": {"init": "pissa"},
}
MUTATING_INITS = ("pissa", "olora")  # these subtract the initial B·A from the base weights
CLASSIFIER_HEADS = ["classifier", "score"]


@register_method("lora", aliases=tuple(SHORTHANDS))
class Lora(PeftMethod):
    name: Literal["lora", "qlora", "dora", "lora_plus", "rslora", "pissa"] = "lora"
    r: int | Literal["auto"] = Field(16, description="Rank of the update B·A (8–16 typical; 64–128 for math/code).")
    alpha: float | None = Field(
        None, alias="lora_alpha", description="Scaling numerator: update = (alpha/r)·B·A. Default 2·r."
    )
    dropout: float = Field(0.05, ge=0, lt=1, alias="lora_dropout", description="Dropout on the LoRA input.")
    target_modules: list[str] | str = Field(
        "all-linear", description="Modules to adapt: all-linear, or names such as [q_proj, v_proj]."
    )
    modules_to_save: list[str] | None = Field(None, description="Extra modules trained fully and saved (e.g. lm_head).")
    use_dora: bool = Field(False, description="DoRA: learn magnitude and direction separately.")
    use_rslora: bool = Field(False, description="rsLoRA: scale by alpha/sqrt(r), stable at high rank.")
    init: Literal["gaussian", "pissa", "olora", "default"] = Field(
        "default", description="Initialisation of A/B: default (B=0), gaussian, pissa (SVD), olora (QR)."
    )
    lora_plus_ratio: float | None = Field(None, gt=0, description="LoRA+: learning rate of B = ratio × that of A.")
    quantize: Literal["nf4", "fp4", "int8"] | None = Field(
        None, description="QLoRA: hold the frozen base in 4-bit (nf4/fp4) or 8-bit (bitsandbytes)."
    )
    double_quant: bool = Field(True, description="QLoRA double quantisation of the quantisation constants.")

    trains = "low-rank A·B on target modules"
    can_merge = True
    inference_cost = "none after merge; small extra matmul unmerged"
    memory_class = "low"
    artefact = "adapter"

    _initial_dir: Path | None = PrivateAttr(None)  # PiSSA/OLoRA: the adapter before training

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, data):
        if isinstance(data, dict) and data.get("name") in SHORTHANDS:
            data = dict(data)
            for key, value in SHORTHANDS[data["name"]].items():
                data.setdefault(key, value)
            data["name"] = "lora"
        return data

    @model_validator(mode="after")
    def _check(self):
        if self.quantize and self.init in MUTATING_INITS:
            raise invalid(f"init {self.init!r} rewrites the base weights (W - B·A), which a quantised base "
                          "cannot hold; drop quantize, or use init: default")
        return self

    @property
    def rank(self) -> int:
        return 16 if self.r == "auto" else int(self.r)

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * self.rank

    def facts(self):
        facts = super().facts()
        if self.quantize:
            bits = "8-bit" if self.quantize == "int8" else f"4-bit {self.quantize}"
            facts.update(trains=f"low-rank A·B on a {bits} frozen base", memory_class="lowest",
                         inference_cost="dequantise per matmul unless merged into a full-precision base")
        elif self.use_dora:
            facts.update(trains="low-rank direction A·B + a magnitude per output",
                         inference_cost="none after merge; a weight norm per forward unmerged")
        return facts

    def check(self, run_config) -> None:
        if self.quantize:
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                raise ConfigError(
                    f"method.quantize={self.quantize} needs bitsandbytes", hint="pip install 'danlu[quant]'"
                ) from None

    def load_kwargs(self):
        if not self.quantize:
            return {}
        import torch
        from transformers import BitsAndBytesConfig

        if self.quantize == "int8":
            return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
        compute = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
        return {
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type=self.quantize,
                bnb_4bit_use_double_quant=self.double_quant,
                bnb_4bit_compute_dtype=compute,
                bnb_4bit_quant_storage=compute,  # FSDP + QLoRA: storage dtype = compute dtype
            )
        }

    def peft_config(self, ctx: MethodContext, model):
        from peft import LoraConfig

        init = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}[self.init]
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            modules_to_save=self.modules_to_save,
            use_dora=self.use_dora,
            use_rslora=self.use_rslora,
            init_lora_weights=init,
            task_type=PEFT_TASK[ctx.task],
            # a classification head is trained whole (modules_to_save), never LoRA-wrapped; PEFT
            # leaves it out of all-linear for SEQ_CLS only, and then fails on TOKEN_CLS heads
            exclude_modules=CLASSIFIER_HEADS if ctx.task != "causal_lm" else None,
        )

    def prepare_base(self, model):
        from peft import prepare_model_for_kbit_training

        if self.quantize:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        if self.quantize == "int8":  # bitsandbytes warns at every 8-bit matmul on CPU; say it once
            logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
            log.info("int8 base: bitsandbytes casts activations to fp16 for each 8-bit matmul")
        return model

    def apply(self, model, ctx: MethodContext):
        model = super().apply(self.prepare_base(model), ctx)
        if self.init in MUTATING_INITS:
            self._save_initial(model)
        return model

    def _save_initial(self, model) -> None:
        """PiSSA/OLoRA move the top singular directions out of W into B·A. Keep the adapter as
        it was before training, so the final one can be saved as a plain LoRA (rank 2r) that
        applies to the original base (PEFT's path_initial_model_for_weight_conversion)."""
        self._initial_dir = Path(tempfile.mkdtemp(prefix="danlu-lora-init-"))
        config = model.peft_config["default"]
        mutating, config.init_lora_weights = config.init_lora_weights, True  # do not re-run the SVD on load
        try:
            model.save_pretrained(str(self._initial_dir / "initial"))
        finally:
            config.init_lora_weights = mutating

    def save_final(self, trainer, out_dir: Path) -> None:
        if self._initial_dir is None:
            return super().save_final(trainer, out_dir)
        model = trainer.accelerator.unwrap_model(trainer.model)
        if trainer.args.should_save:
            model.save_pretrained(str(out_dir), path_initial_model_for_weight_conversion=str(self._initial_dir / "initial"))
            shutil.rmtree(self._initial_dir, ignore_errors=True)

    def optimizer_groups(self, model, learning_rate, weight_decay):
        if not self.lora_plus_ratio:
            return None
        a_params, b_params = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (b_params if "lora_B" in name or "lora_embedding_B" in name else a_params).append(p)
        return [
            {"params": a_params, "lr": learning_rate, "weight_decay": weight_decay},
            {"params": b_params, "lr": learning_rate * self.lora_plus_ratio, "weight_decay": weight_decay},
        ]

    def merge(self, model):
        if not self.quantize:
            return model.merge_and_unload()
        return merge_into_dequantized(model)


def merge_into_dequantized(model):
    """QLoRA merge: folding B·A into 4-bit weights would round it away, so the base is first
    dequantised to full precision (the exact weights the adapter trained against), then the
    adapter is put back and merged. Returns a plain, unquantised transformers model."""
    import copy

    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    config = copy.deepcopy(model.peft_config["default"])
    state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    base = model.unload().dequantize()  # bnb layers → nn.Linear; quantization_config removed
    plain = get_peft_model(base, config)
    unplaced = set_peft_model_state_dict(plain, state).unexpected_keys
    if unplaced:
        raise RuntimeError(f"adapter weights not placed after dequantising: {unplaced[:3]}")
    return plain.merge_and_unload()


def base_weight_bytes(model) -> dict[str, int]:
    """Bytes the linear weights of the base's blocks take in memory (packed 4/8-bit values
    plus their quantisation constants) against the same weights in fp32 and in bf16. The
    output head (tied to the embeddings here) is never quantised and is left out."""
    import torch.nn as nn

    from danlu.methods.base import logical_numel

    head = model.get_output_embeddings()
    packed = constants = logical = 0
    seen: set[int] = set()
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if weight is None or "lora_" in name or module is head or hasattr(module, "base_layer"):
            continue  # (a PEFT wrapper's base_layer is visited on its own)
        if not (isinstance(module, nn.Linear) or "Linear" in type(module).__name__):
            continue
        logical += logical_numel(weight)
        packed += _tensor_bytes(weight, seen)
        state = getattr(weight, "quant_state", None)
        if state is not None:
            constants += _quant_state_bytes(state, seen)
        scb = getattr(weight, "SCB", None)  # int8: one fp32 scale per row
        if scb is not None:
            constants += _tensor_bytes(scb, seen)
    return {"linear_weight_bytes": packed + constants, "packed_weight_bytes": packed, "fp32_bytes": 4 * logical,
            "bf16_bytes": 2 * logical, "values": logical}


def _tensor_bytes(t, seen: set[int]) -> int:
    if t is None or t.data_ptr() in seen:
        return 0
    seen.add(t.data_ptr())
    return t.numel() * t.element_size()


def _quant_state_bytes(state, seen: set[int]) -> int:
    """absmax per 64-value block (itself 8-bit with double quantisation), the 16-entry code, nested state."""
    import torch

    total = sum(_tensor_bytes(getattr(state, a, None), seen) for a in ("absmax", "code", "offset")
                if isinstance(getattr(state, a, None), torch.Tensor))
    nested = getattr(state, "state2", None)
    return total + (_quant_state_bytes(nested, seen) if nested is not None else 0)
