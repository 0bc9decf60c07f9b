"""What each fine-tuning method means for memory: which parameters train, how the frozen base
is stored (4/8-bit for QLoRA), what it adds to each linear module, and whether it adds virtual
tokens. One profile per method, registered by name (the names of `method.name`), built from the
method's own options (a danlu Method object or a plain dict) with PEFT's defaults where the
method leaves a choice open.

Methods that land later (ia3, prefix, prompt, adapter, bitfit, freeze, adalora) are profiled from
their published definitions and PEFT's implementation; option names are read leniently
(`num_virtual_tokens`, `target_modules`, ...) so the profile follows whatever the method class
calls them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from danlu.errors import UserError
from danlu.plan.arch import Arch, Linear
from danlu.registry import Registry

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


def opt(method: Any, name: str, default=None):
    """An option of a method given as a danlu Method object or a dict (with PEFT-style aliases)."""
    if isinstance(method, dict):
        value = method.get(name, default)
    else:
        value = getattr(method, name, default)
    return default if value is None else value


PROFILES: Registry[Callable[[Arch, Any], MethodShape]] = Registry("method profile")
profile = PROFILES.register


def method_shape(arch: Arch, name: str, method: Any) -> MethodShape:
    if name not in PROFILES:
        raise UserError(f"danlu plan has no memory profile for method {name!r} yet",
                        where="method.name", hint="known: " + ", ".join(PROFILES.names()))
    return PROFILES.get(name)(arch, method)


# ---- target modules ------------------------------------------------------------------------------
def targets(arch: Arch, wanted: list[str] | str) -> list[Linear]:
    """The block linears a target_modules setting selects (all-linear: every block linear; PEFT
    never adapts the output layer under all-linear)."""
    linears = arch.block_linears()
    if wanted in ("all-linear", "all_linear", "all"):
        return linears
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    picked = [lin for lin in linears if any(lin.name == n or lin.name.endswith("." + n) or n.endswith(lin.name)
                                            for n in names)]
    if not picked:
        raise UserError(f"target_modules {names} match no linear module of {arch.model_type}",
                        where="method.target_modules",
                        hint="modules of one block: " + ", ".join(lin.name for lin in linears))
    return picked


def _extra_modules(arch: Arch, modules) -> tuple[int, bool]:
    """Parameters of `modules_to_save` (trained in full) and whether they include the output layer."""
    n, head = 0, False
    for name in modules or []:
        if name in ("lm_head", "embed_tokens", "word_embeddings", "wte"):
            n += arch.vocab * arch.hidden
            head = True
        elif name in ("score", "classifier"):
            n += arch.hidden * 2
    return n, head


# ---- profiles ----------------------------------------------------------------------------------
@profile("full")
def full(arch: Arch, method) -> MethodShape:
    return MethodShape("full", arch.n_params, trainable_blocks=arch.layers, embeddings_train=True,
                       largest_trainable=max(arch.vocab * arch.hidden,
                                             max(lin.d_in * lin.d_out for lin in arch.block_linears())))


def lora_rank(arch: Arch, method) -> int:
    r = opt(method, "r", 16)
    return 16 if r == "auto" else int(r)


@profile("lora", aliases=("qlora", "dora", "rslora", "pissa", "lora_plus"))
def lora(arch: Arch, method) -> MethodShape:
    r = lora_rank(arch, method)
    dora = bool(opt(method, "use_dora", False))
    picked = targets(arch, opt(method, "target_modules", "all-linear"))
    per_block = sum(r * (lin.d_in + lin.d_out) + (lin.d_out if dora else 0) for lin in picked)
    extra, _ = _extra_modules(arch, opt(method, "modules_to_save", None))
    quant = {"nf4": 4, "fp4": 4, "int8": 8}.get(opt(method, "quantize", None))
    adapter = Adapter("lora", rank=r, dropout=float(opt(method, "dropout", opt(method, "lora_dropout", 0.05))),
                      dora=dora)
    shape = MethodShape("lora", arch.layers * per_block + extra, quant_bits=quant,
                        double_quant=bool(opt(method, "double_quant", True)),
                        adapters={lin.name: adapter for lin in picked}, embeddings_train=bool(extra),
                        largest_trainable=max(extra, max(r * max(lin.d_in, lin.d_out) for lin in picked)))
    if dora:
        shape.notes.append("DoRA: the weight norm of every adapted module is recomputed each step "
                           "(one full weight-sized temporary at a time)")
    return shape


@profile("adalora")
def adalora(arch: Arch, method) -> MethodShape:
    r = int(opt(method, "init_r", 12))
    picked = targets(arch, opt(method, "target_modules", "all-linear"))
    per_block = sum(r * (lin.d_in + lin.d_out) + r for lin in picked)  # A, B and the singular values E
    adapter = Adapter("lora", rank=r, dropout=float(opt(method, "dropout", opt(method, "lora_dropout", 0.0))))
    shape = MethodShape("adalora", arch.layers * per_block, adapters={lin.name: adapter for lin in picked},
                        largest_trainable=max(r * max(lin.d_in, lin.d_out) for lin in picked))
    shape.notes.append(f"AdaLoRA: memory at the initial rank {r}; ranks shrink as training prunes them")
    return shape


@profile("ia3")
def ia3(arch: Arch, method) -> MethodShape:
    wanted = opt(method, "target_modules", None) or IA3_TARGETS.get(arch.model_type, "all-linear")
    feedforward = opt(method, "feedforward_modules", None) or IA3_FEEDFORWARD
    picked = targets(arch, wanted)
    adapters, per_block = {}, 0
    for lin in picked:
        ff = any(lin.name == f or lin.name.endswith(f) for f in feedforward)
        adapters[lin.name] = Adapter("ia3_ff" if ff else "ia3")
        per_block += lin.d_in if ff else lin.d_out  # one learned vector: scales the input (ff) or the output
    return MethodShape("ia3", arch.layers * per_block, adapters=adapters,
                       largest_trainable=max(lin.d_in for lin in picked))


def _virtual_tokens(method, default: int = 20) -> int:
    return int(opt(method, "num_virtual_tokens", opt(method, "virtual_tokens", default)))


@profile("prefix", aliases=("prefix_tuning",))
def prefix(arch: Arch, method) -> MethodShape:
    p = _virtual_tokens(method)
    table = p * arch.layers * 2 * arch.kv_dim  # PEFT: token_dim = kv heads × head_dim
    n = table
    if opt(method, "prefix_projection", False):
        hidden = int(opt(method, "encoder_hidden_size", arch.hidden))
        n = p * arch.hidden + arch.hidden * hidden + hidden + hidden * arch.layers * 2 * arch.kv_dim \
            + arch.layers * 2 * arch.kv_dim
    return MethodShape("prefix", n, prefix_tokens=p, largest_trainable=max(table, n - table))


@profile("prompt", aliases=("prompt_tuning", "p_tuning", "ptuning"))
def prompt(arch: Arch, method) -> MethodShape:
    p = _virtual_tokens(method)
    n = p * arch.hidden
    encoder = opt(method, "encoder_hidden_size", None)
    if encoder:  # P-tuning: an MLP prompt encoder over the virtual token embeddings
        n += 2 * arch.hidden * int(encoder) + int(encoder) + arch.hidden
    return MethodShape("prompt", n, prompt_tokens=p, largest_trainable=n)


@profile("adapter", aliases=("houlsby", "bottleneck"))
def adapter(arch: Arch, method) -> MethodShape:
    m = int(opt(method, "bottleneck", opt(method, "bottleneck_size", opt(method, "adapter_size", 64))))
    per = int(opt(method, "adapters_per_block", 2))  # Houlsby: after attention and after the FFN
    n = arch.layers * per * (2 * arch.hidden * m + m + arch.hidden)
    return MethodShape("adapter", n, bottleneck=m, bottleneck_per_block=per, largest_trainable=arch.hidden * m)


@profile("bitfit")
def bitfit(arch: Arch, method) -> MethodShape:
    n = arch.bias_params()
    if n == 0:
        raise UserError(f"{arch.model_type} has no bias parameters, so BitFit has nothing to train",
                        where="method.name", hint="pick a model with biases (Qwen2, BERT, Phi-2) or another method")
    return MethodShape("bitfit", n, biases_train=True, largest_trainable=max(arch.vocab, arch.intermediate))


@profile("freeze")
def freeze(arch: Arch, method) -> MethodShape:
    k = int(opt(method, "trainable_layers", opt(method, "num_trainable_layers", 2)))
    k = max(1, min(k, arch.layers))
    return MethodShape("freeze", k * arch.block_params(), trainable_blocks=k,
                       largest_trainable=max(lin.d_in * lin.d_out for lin in arch.block_linears()))
