"""LoRA and its variants as options of one method (PEFT): DoRA, rsLoRA, PiSSA/OLoRA init,
LoRA+ (a larger learning rate for B), and QLoRA (a 4/8-bit frozen base, bitsandbytes).
`qlora`, `dora`, `lora_plus`, `rslora` and `pissa` are shorthands that set those options."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from danlu.errors import ConfigError
from danlu.methods.base import Method, MethodContext
from danlu.methods.registry import register_method

SHORTHANDS = {
    "qlora": {"quantize": "nf4"},
    "dora": {"use_dora": True},
    "lora_plus": {"lora_plus_ratio": 16.0},
    "rslora": {"use_rslora": True},
    "pissa": {"init": "pissa"},
}
PEFT_TASK = {"causal_lm": "CAUSAL_LM", "seq_cls": "SEQ_CLS", "token_cls": "TOKEN_CLS"}


@register_method("lora", aliases=tuple(SHORTHANDS))
class Lora(Method):
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
    memory_class = "low (QLoRA: lowest)"
    artefact = "adapter"

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, data):
        if isinstance(data, dict) and data.get("name") in SHORTHANDS:
            for key, value in SHORTHANDS[data["name"]].items():
                data.setdefault(key, value)
            data["name"] = "lora"
        return data

    @model_validator(mode="after")
    def _check(self):
        if self.quantize and self.init in ("pissa", "olora"):
            raise ValueError(f"init {self.init!r} needs full-precision base weights; it cannot be used with quantize")
        return self

    @property
    def rank(self) -> int:
        return 16 if self.r == "auto" else int(self.r)

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * self.rank

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

    def peft_config(self, ctx: MethodContext):
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
        )

    def apply(self, model, ctx: MethodContext):
        from peft import get_peft_model, prepare_model_for_kbit_training

        if self.quantize:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return get_peft_model(model, self.peft_config(ctx))

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

    def load_trained(self, base_model, artefact_dir: Path):
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, str(artefact_dir), is_trainable=False)

    def merge(self, model):
        return model.merge_and_unload()
