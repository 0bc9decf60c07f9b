"""Prefix tuning (PEFT): learned key/value vectors prepended in the attention of every layer
(optionally produced by an MLP during training, `prefix_projection`). The prefix lives in the
attention cache, so the logits line up with the input: logits_to_keep still works."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from danlu.methods.base import MethodContext
from danlu.methods.peft_base import PEFT_TASK, VirtualTokenMethod
from danlu.methods.registry import register_method
from danlu.methods.shape import MethodShape, ModelShape


@register_method("prefix")
class Prefix(VirtualTokenMethod):
    name: Literal["prefix"] = "prefix"
    prefix_projection: bool = Field(False, description="Reparameterise the prefix through an MLP while training.")
    encoder_hidden_size: int | None = Field(None, ge=1, description="Hidden size of that MLP (default: model width).")

    trains = "key/value vectors for virtual tokens in every layer"

    def memory_shape(self, arch: ModelShape) -> MethodShape:
        p = self.num_virtual_tokens
        table = p * arch.layers * 2 * arch.kv_dim  # PEFT: token_dim = kv heads × head_dim
        n = table
        if self.prefix_projection:
            hidden = self.encoder_hidden_size or arch.hidden
            n = p * arch.hidden + arch.hidden * hidden + hidden + hidden * arch.layers * 2 * arch.kv_dim \
                + arch.layers * 2 * arch.kv_dim
        return MethodShape("prefix", n, prefix_tokens=p, largest_trainable=max(table, n - table))

    def peft_config(self, ctx: MethodContext, model):
        from peft import PrefixTuningConfig

        kwargs = {"encoder_hidden_size": self.encoder_hidden_size} if self.encoder_hidden_size else {}
        return PrefixTuningConfig(num_virtual_tokens=self.num_virtual_tokens, prefix_projection=self.prefix_projection,
                                  task_type=PEFT_TASK[ctx.task], **kwargs)
