"""A method's memory shape: what the planner (`danlu plan`, and the memory check `danlu train`
runs first) needs to know about a fine-tuning method — which parameters train, how the frozen
base is stored (4/8-bit for QLoRA), what it attaches to each linear module, whether it adds
virtual tokens. Every Method class returns one from `memory_shape(arch)`, built from its own
typed options; this module holds the shape and the helpers those methods share. Torch-free.

`arch` is the planner's description of a model (danlu.plan.arch.Arch); methods only read the
attributes of `ModelShape` below, so this layer does not import the planner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from danlu.errors import UserError


class LinearShape(Protocol):
    name: str
    d_in: int
    d_out: int


class ModelShape(Protocol):
    """What a method's memory shape reads of a model (danlu.plan.arch.Arch provides it)."""

    model_type: str
    hidden: int
    layers: int
    vocab: int
    intermediate: int

    @property
    def n_params(self) -> int: ...
    @property
    def kv_dim(self) -> int: ...
    def block_linears(self) -> Sequence[LinearShape]: ...
    def block_params(self) -> int: ...
    def bias_params(self) -> int: ...


@dataclass(frozen=True)
class Adapter:
    """What a method attaches to one linear module of every block."""

    kind: str  # lora | ia3 | ia3_ff
    rank: int = 0
    dropout: float = 0.0
    dora: bool = False


@dataclass
class MethodShape:
    name: str
    trainable: int  # trainable parameters
    trainable_blocks: int = 0  # top blocks whose own weights train (full: all; freeze: N)
    embeddings_train: bool = False  # input embedding / lm_head weights train
    quant_bits: int | None = None  # 4 or 8: frozen block linears stored quantised (bitsandbytes)
    double_quant: bool = True
    adapters: dict[str, Adapter] = field(default_factory=dict)  # linear name → adapter (every block)
    biases_train: bool = False  # BitFit
    prefix_tokens: int = 0  # virtual keys/values in every block (prefix tuning)
    prompt_tokens: int = 0  # virtual tokens prepended to the input (prompt tuning, P-tuning)
    bottleneck: int = 0  # bottleneck adapters: size
    bottleneck_per_block: int = 0
    largest_trainable: int = 0  # elements of the largest trainable tensor (optimizer temporaries)
    notes: list[str] = field(default_factory=list)

    @property
    def trains_base(self) -> bool:
        return self.trainable_blocks > 0 or self.embeddings_train

    @property
    def virtual_tokens(self) -> int:
        return self.prefix_tokens + self.prompt_tokens


def targets(arch: ModelShape, wanted: Sequence[str] | str, where: str = "method.target_modules") -> list:
    """The block linears a target_modules setting selects (all-linear: every block linear; PEFT
    never adapts the output layer under all-linear)."""
    linears = arch.block_linears()
    if wanted in ("all-linear", "all_linear", "all"):
        return list(linears)
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    picked = [lin for lin in linears if any(lin.name == n or lin.name.endswith("." + n) or n.endswith(lin.name)
                                            for n in names)]
    if not picked:
        raise UserError(f"target_modules {names} match no linear module of {arch.model_type}", where=where,
                        hint="modules of one block: " + ", ".join(lin.name for lin in linears))
    return picked


def saved_modules(arch: ModelShape, modules: Sequence[str] | None) -> tuple[int, bool]:
    """Parameters of `modules_to_save` (trained in full) and whether they include the output layer."""
    n, head = 0, False
    for name in modules or []:
        if name in ("lm_head", "embed_tokens", "word_embeddings", "wte"):
            n += arch.vocab * arch.hidden
            head = True
        elif name in ("score", "classifier"):
            n += arch.hidden * 2
    return n, head


def prompt_shape(arch: ModelShape, tokens: int, encoder_hidden: int | None = None) -> MethodShape:
    """Virtual-token embeddings in front of the input; P-tuning adds an MLP prompt encoder over them."""
    n = tokens * arch.hidden
    if encoder_hidden:
        n += 2 * arch.hidden * encoder_hidden + encoder_hidden + arch.hidden
    return MethodShape("prompt", n, prompt_tokens=tokens, largest_trainable=n)


def low_rank_shape(name: str, arch: ModelShape, *, rank: int, target_modules, dropout: float,
                   extra_per_module: int = 0) -> MethodShape:
    """LoRA-like adapters (A: r × in, B: out × r, plus `extra_per_module` each) on the targets."""
    picked = targets(arch, target_modules)
    per_block = sum(rank * (lin.d_in + lin.d_out) + extra_per_module for lin in picked)
    adapter = Adapter("lora", rank=rank, dropout=dropout)
    return MethodShape(name, arch.layers * per_block, adapters={lin.name: adapter for lin in picked},
                       largest_trainable=max(rank * max(lin.d_in, lin.d_out) for lin in picked))
