"""IA³ (PEFT): learned vectors that rescale the keys, values and the feed-forward activations
(l_k, l_v, l_ff), initialised to ones. The fewest trainable parameters of any method here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from danlu.methods.base import MethodContext
from danlu.methods.peft_base import PEFT_TASK, PeftMethod
from danlu.methods.registry import register_method
from danlu.methods.shape import Adapter, MethodShape, ModelShape, targets

# PEFT's default IA3 targets (peft.utils.constants); the last one of each list is a feed-forward
# module, whose *input* IA3 scales.
IA3_TARGETS = {
    "llama": ["k_proj", "v_proj", "down_proj"], "mistral": ["k_proj", "v_proj", "down_proj"],
    "qwen2": ["q_proj", "v_proj", "down_proj"], "qwen3": ["q_proj", "v_proj", "down_proj"],
    "gemma": ["q_proj", "v_proj", "down_proj"], "gemma2": ["q_proj", "v_proj", "down_proj"],
    "gemma3_text": ["q_proj", "v_proj", "down_proj"], "glm": ["k_proj", "v_proj", "down_proj"],
    "glm4": ["k_proj", "v_proj", "down_proj"], "phi3": ["qkv_proj", "down_proj"],
    "phi": ["q_proj", "v_proj", "fc2"], "bert": ["key", "value", "output.dense"],
}
IA3_FEEDFORWARD = ("down_proj", "fc2", "output.dense")


@register_method("ia3")
class IA3(PeftMethod):
    name: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = Field(
        None, description="Modules whose output (or input, for feed-forward ones) is rescaled; default per architecture "
                          "(k_proj, v_proj, down_proj on Llama/Qwen).")
    feedforward_modules: list[str] | None = Field(
        None, description="Which of target_modules are feed-forward (their input is scaled); default per architecture.")

    trains = "one scaling vector per key, value and feed-forward layer"
    can_merge = True
    inference_cost = "none after merge; an elementwise scale unmerged"
    memory_class = "lowest"

    def memory_shape(self, arch: ModelShape) -> MethodShape:
        picked = targets(arch, self.target_modules or IA3_TARGETS.get(arch.model_type, "all-linear"))
        feedforward = self.feedforward_modules or IA3_FEEDFORWARD
        adapters, per_block = {}, 0
        for lin in picked:
            ff = any(lin.name == f or lin.name.endswith(f) for f in feedforward)
            adapters[lin.name] = Adapter("ia3_ff" if ff else "ia3")
            per_block += lin.d_in if ff else lin.d_out  # one learned vector: scales the input (ff) or the output
        return MethodShape("ia3", arch.layers * per_block, adapters=adapters,
                           largest_trainable=max(lin.d_in for lin in picked))

    def peft_config(self, ctx: MethodContext, model):
        from peft import IA3Config

        return IA3Config(target_modules=self.target_modules, feedforward_modules=self.feedforward_modules,
                         task_type=PEFT_TASK[ctx.task])

    def auto_learning_rate(self, n_params: int) -> float:
        """IA³ vectors start at 1 and need a larger step than LoRA (the paper uses 3e-3)."""
        return 1e-2 if n_params < 100e6 else 3e-3
