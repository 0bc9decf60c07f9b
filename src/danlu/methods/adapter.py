"""Bottleneck adapters (Houlsby et al. 2019): after the attention and the MLP of every block,
a small MLP h ↦ h + up(act(down(h))) with its own residual; `up` starts at zero, so training
starts from the unchanged base. PEFT has no such method and the maintained library
(AdapterHub `adapters` 1.3) pins transformers ~=4.57, so danlu carries this small module.
The adapter wraps the sub-layer's output projection (o_proj, down_proj), i.e. it acts on the
sub-layer's output before the block's residual add, where Houlsby places it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from danlu.errors import ConfigError
from danlu.methods.base import Method, MethodContext, freeze_all
from danlu.methods.registry import register_method
from danlu.methods.shape import MethodShape, ModelShape
from danlu.methods.small_state import load_trained_tensors, save_trained_tensors

WEIGHTS = "bottleneck_adapters.safetensors"
# output projections of the attention and the MLP, by architecture (suffixes of module names)
AUTO_TARGETS = {
    "gpt2": ["attn.c_proj", "mlp.c_proj"],
    "bert": ["output.dense"],  # attention.output.dense and layer.N.output.dense
}
DEFAULT_TARGETS = ["self_attn.o_proj", "mlp.down_proj"]  # Llama, Qwen, Mistral, Gemma, Phi-3 ...


@register_method("adapter")
class Adapter(Method):
    name: Literal["adapter"] = "adapter"
    bottleneck: int = Field(64, ge=1, description="Bottleneck size m of each adapter (d → m → d).")
    activation: Literal["gelu", "relu", "silu"] = Field("gelu", description="Non-linearity between down and up.")
    target_modules: list[str] | Literal["auto"] = Field(
        "auto", description="Output projections to follow with an adapter (suffixes of module names); auto: the "
                            "attention and MLP output projections of the architecture.")

    trains = "bottleneck MLPs after attention and MLP in every block"
    can_merge = False
    merge_note = "each adapter holds a non-linearity, which no weight matrix can absorb"
    inference_cost = "two small MLPs per block (~4·d·m FLOPs per token each), always"
    memory_class = "low"
    artefact = "adapter"

    def memory_shape(self, arch: ModelShape) -> MethodShape:
        m, per = self.bottleneck, 2  # Houlsby: after attention and after the FFN
        n = arch.layers * per * (2 * arch.hidden * m + m + arch.hidden)
        return MethodShape("adapter", n, bottleneck=m, bottleneck_per_block=per, largest_trainable=arch.hidden * m)

    def targets(self, model) -> list[str]:
        suffixes = self.target_modules
        if suffixes == "auto":
            suffixes = AUTO_TARGETS.get(getattr(model.config, "model_type", ""), DEFAULT_TARGETS)
        found = [n for n, _ in model.named_modules() if any(n == s or n.endswith("." + s) for s in suffixes)]
        if not found:
            from danlu.methods.peft_base import linear_module_names

            raise ConfigError(f"method adapter: no module named {', '.join(suffixes)} in this model",
                              where="method.target_modules",
                              hint="name the attention and MLP output projections; linear layers here: "
                                   + ", ".join(linear_module_names(model)))
        return found

    def apply(self, model, ctx: MethodContext):
        from danlu.methods._bottleneck import AdapterLayer, Bottleneck, out_features

        names = self.targets(model)
        freeze_all(model)
        for name in names:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            layer = getattr(parent, child)
            device = next(layer.parameters()).device
            adapter = Bottleneck(out_features(layer), self.bottleneck, self.activation).to(device)
            setattr(parent, child, AdapterLayer(layer, adapter))
        return model

    def save_final(self, trainer, out_dir: Path) -> None:
        save_trained_tensors(trainer, out_dir, WEIGHTS)

    def load_trained(self, base_model, artefact_dir: Path):
        model = self.apply(base_model, MethodContext())
        load_trained_tensors(model, artefact_dir, WEIGHTS)
        freeze_all(model)
        return model
