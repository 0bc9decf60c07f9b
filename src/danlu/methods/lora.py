"""LoRA and its variants as options of one method (PEFT): DoRA, rsLoRA, PiSSA/OLoRA init,
LoRA+ (a larger learning rate for B), and QLoRA (a 4/8-bit frozen base, bitsandbytes).
`qlora`, `dora`, `lora_plus`, `rslora` and `pissa` are shorthands that set those options."""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, model_validator

from danlu.errors import ConfigError
from danlu.methods.base import MethodContext, invalid
from danlu.methods.peft_base import HEAD_MODULES, PEFT_TASK, PeftMethod
from danlu.methods.registry import register_method
from danlu.methods.shape import Adapter, MethodShape, ModelShape, saved_modules, targets

log = logging.getLogger(__name__)
SHORTHANDS = {
    "qlora": {"quantize": "nf4"},
    "dora": {"use_dora": True},
    "lora_plus": {"lora_plus_ratio": 16.0},
    "rslora": {"use_rslora": True},
    "pissa": {"init": "pissa"},
}
QUANT_BITS = {"nf4": 4, "fp4": 4, "int8": 8}  # bits a quantised frozen base linear is stored in
MUTATING_INITS = ("pissa", "olora")  # these subtract the initial B·A from the base weights
CLASSIFIER_HEADS = ["classifier", "score"]


@register_method("lora", aliases=tuple(SHORTHANDS))
class Lora(PeftMethod):
    name: Literal["lora", "qlora", "dora", "lora_plus", "rslora", "pissa"] = "lora"
    r: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        16, description="Rank of the update B·A (8–16 typical; 64–128 for math/code).")
    alpha: float | None = Field(
        None, gt=0, alias="lora_alpha", description="Scaling numerator: update = (alpha/r)·B·A. Default 2·r."
    )
    dropout: float = Field(0.05, ge=0, lt=1, alias="lora_dropout", description="Dropout on the LoRA input.")
    target_modules: list[str] | str = Field(
        "all-linear", description="Modules to adapt: all-linear, or names such as [q_proj, v_proj]."
    )
    modules_to_save: list[str] | None = Field(None, description="Extra modules trained fully and saved (e.g. lm_head).")
    use_dora: bool = Field(False, description="DoRA: learn magnitude and direction separately.")
    use_rslora: bool = Field(False, description="rsLoRA: scale by alpha/sqrt(r), stable at high rank.")
    init: Literal["gaussian", "pissa", "olora", "eva", "default"] = Field(
        "default", description="Initialisation of A/B: default (B=0), gaussian, pissa (SVD), olora (QR), "
                               "eva (A from the SVD of the targets' inputs on the first training batches; B=0)."
    )
    eva_batches: int = Field(8, ge=1, description="init: eva: training batches whose activations set A.")
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

    def memory_shape(self, arch: ModelShape) -> MethodShape:
        r, dora = self.rank, self.use_dora
        picked = targets(arch, self.target_modules)
        per_block = sum(r * (lin.d_in + lin.d_out) + (lin.d_out if dora else 0) for lin in picked)
        extra, _ = saved_modules(arch, self.modules_to_save)
        adapter = Adapter("lora", rank=r, dropout=self.dropout, dora=dora)
        shape = MethodShape("lora", arch.layers * per_block + extra, quant_bits=QUANT_BITS.get(self.quantize),
                            double_quant=self.double_quant, adapters={lin.name: adapter for lin in picked},
                            embeddings_train=bool(extra),
                            largest_trainable=max(extra, max(r * max(lin.d_in, lin.d_out) for lin in picked)))
        if dora:
            shape.notes.append("DoRA: the weight norm of every adapted module is recomputed each step "
                               "(one full weight-sized temporary at a time)")
        return shape

    def check(self, run_config) -> None:
        from danlu.runplan import CAUSAL_LM_STAGES

        if self.init == "eva" and run_config.stage not in CAUSAL_LM_STAGES:
            raise ConfigError(f"method.init: eva reads the inputs of plain training rows, which stage "
                              f"{run_config.stage!r} does not have", where="method.init",
                              hint=f"use init: eva with stage {' or '.join(CAUSAL_LM_STAGES)}, or init: default")
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
        from peft import EvaConfig, LoraConfig

        init = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora", "eva": "eva"}[self.init]
        return LoraConfig(
            # rho 1: every module keeps rank r (no redistribution), so the adapter is the size planned
            eva_config=EvaConfig(rho=1.0) if self.init == "eva" else None,
            r=self.rank,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.dropout,
            target_modules=self._targets(model),
            modules_to_save=self.modules_to_save or HEAD_MODULES.get(ctx.task),
            use_dora=self.use_dora,
            use_rslora=self.use_rslora,
            init_lora_weights=init,
            task_type=PEFT_TASK[ctx.task],
            # a classification head is trained whole (modules_to_save), never LoRA-wrapped; PEFT
            # leaves it out of all-linear for SEQ_CLS only, and then fails on TOKEN_CLS heads
            exclude_modules=CLASSIFIER_HEADS if ctx.task in ("seq_cls", "token_cls", "image_cls") else None,
        )

    def _targets(self, model):
        """all-linear on a vision-language model: the language model's linear layers (plus the vision
        tower's / projector's when method.freeze_* is false), not PEFT's every linear layer."""
        from danlu.models.processor import is_vision_config, language_linear_targets

        if self.target_modules != "all-linear" or not is_vision_config(getattr(model, "config", None)):
            return self.target_modules
        return language_linear_targets(model, tower=not self.freeze_vision_tower, projector=not self.freeze_projector)

    def prepare_base(self, model):
        from peft import prepare_model_for_kbit_training

        if self.quantize:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        if self.quantize == "int8":  # bitsandbytes warns at every 8-bit matmul on CPU; say it once
            logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
            log.info("int8 base: bitsandbytes casts activations to fp16 for each 8-bit matmul")
        return model

    def apply(self, model, ctx: MethodContext):
        model = self.prepare_base(model)
        with warnings.catch_warnings():  # PEFT suggests low_cpu_mem_usage for EVA's larger batches
            warnings.filterwarnings("ignore", message=".*eva initialization.*")
            model = super().apply(model, ctx)
        if self.init == "eva":
            self._eva_init(model, ctx)
        if self.init in MUTATING_INITS:
            self._save_initial(model)
        return model

    def _eva_init(self, model, ctx: MethodContext) -> None:
        """EVA (Paischer et al. 2024, PEFT): each A := the top-r right singular vectors of that
        module's inputs on the first training batches (label positions only); B stays 0, so the
        model starts as the base."""
        from peft import initialize_lora_eva_weights

        batches = ctx.sample_batches(self.eva_batches)
        log.info("EVA: initialising LoRA A from %d training batch(es)", len(batches))
        initialize_lora_eva_weights(model, batches, forward_fn=_eva_forward, show_progress_bar=False,
                                    gather_distributed_inputs=False)  # every rank reads the same batches

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


def _eva_forward(model, inputs: dict):
    return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)


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
