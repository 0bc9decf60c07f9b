"""Activation memory: the tensors autograd saves for the backward pass, block by block.

One block is walked op by op the way transformers and PEFT run it, recording each tensor that
some op saves — once, however many ops share it — in bytes per token (and, for the attention
mask or eager attention probabilities, per token × key length). What gets saved depends on
what needs a gradient: a frozen linear saves nothing for its weight, so LoRA on a frozen base
saves less per module than full fine-tuning and more per adapted module (dropout masks, casts).
The walk is checked against `torch.autograd.graph.saved_tensors_hooks` on builtin models
(tests/unit/plan/test_activations.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from danlu.methods.shape import Adapter, MethodShape
from danlu.runplan import VARLEN_SDPA
from danlu.plan.arch import Arch, Linear


@dataclass(frozen=True)
class Numerics:
    """Bytes of each kind of tensor in a run (device and precision)."""

    device: str = "cuda"  # cuda | cpu
    autocast: bool = True  # bf16/fp16 autocast around the forward
    stream: int = 2  # the residual stream (fp32 when the embeddings are fp32)
    act: int = 2  # matmul outputs
    mask: int = 1  # dropout masks: bool on CUDA; a float noise tensor on CPU
    attn: str = "sdpa"  # sdpa | eager | flash_attention_2 | danlu_varlen_sdpa (per-sample causal SDPA)
    mask_4d: bool = True  # a (B, 1, L, L) mask reaches attention (packing, or padding with sdpa/eager)
    lora_uncast: bool = False  # under autocast LoRA inputs stay in the compute dtype (methods.lora
    # training_forward_context: PEFT's fp32 cast skipped), so a CPU dropout mask is 16-bit too
    liger: bool = False  # Liger's RMSNorm (saves its input as is + rstd) and SwiGLU (saves gate and up only)
    quant_out: int | None = None  # bytes of a quantised base linear's output when autocast does not
    # set it: bitsandbytes computes in bnb_4bit_compute_dtype, which danlu sets to fp32 on a CPU


@dataclass
class Saved:
    """Saved tensors: name → bytes per token, and name → bytes per token per key position."""

    linear: dict[str, float] = field(default_factory=dict)
    quadratic: dict[str, float] = field(default_factory=dict)
    fixed: dict[str, float] = field(default_factory=dict)  # bytes per block whatever the batch

    def add(self, name: str, elements: float, nbytes: int) -> str:
        self.linear.setdefault(name, elements * nbytes)
        return name

    def add_quadratic(self, name: str, elements: float, nbytes: int) -> None:
        self.quadratic.setdefault(name, elements * nbytes)

    def bytes(self, tokens: int, key_length: int) -> float:
        return tokens * (sum(self.linear.values()) + key_length * sum(self.quadratic.values())) + \
            sum(self.fixed.values())


@dataclass
class T:
    """A tensor in the walk: its name, bytes per element and whether it needs a gradient."""

    name: str
    nbytes: int
    grad: bool


class BlockWalk:
    def __init__(self, arch: Arch, shape: MethodShape, num: Numerics, *, trains: bool, grad_in: bool):
        self.a, self.m, self.n = arch, shape, num
        self.trains = trains  # this block's own weights train (full, freeze)
        self.s = Saved()
        self.x = T("x", num.stream, grad_in)

    # -- ops ----------------------------------------------------------------------------------
    def norm(self, tag: str, x: T, dim: int) -> T:
        """RMSNorm computes in fp32: saves x (fp32 copy if x is 16-bit) and, for its weight, the
        normalised x. LayerNorm saves its input only."""
        if self.a.family.norm_bias:
            if x.grad or self.trains:
                self.s.add(x.name, dim, x.nbytes)
            return T(f"{tag}.out", x.nbytes, x.grad or self.trains)
        if self.n.liger:  # one kernel: its input in its own dtype and the fp32 rstd, whatever trains
            if x.grad or self.trains:
                self.s.add(x.name, dim, x.nbytes)
                self.s.add(f"{tag}.rstd", 1, 4)
            return T(f"{tag}.out", x.nbytes, x.grad or self.trains)
        if x.grad:
            self.s.add(x.name if x.nbytes == 4 else f"{tag}.x32", dim, 4)
            self.s.add(f"{tag}.rstd", 1, 4)
        if self.trains:
            self.s.add(f"{tag}.normed", dim, 4)
        return T(f"{tag}.out", x.nbytes, x.grad or self.trains)

    def linear(self, lin: Linear, x: T) -> T:
        n, s = self.n, self.s
        adapter = self.m.adapters.get(lin.name)
        if self.trains:  # the weight's gradient needs the input (a bf16 copy under autocast)
            s.add(x.name if not n.autocast or x.nbytes == 2 else f"{lin.name}.in16", lin.d_in, 2 if n.autocast else x.nbytes)
        out_bytes = n.act if n.autocast else x.nbytes
        if self.m.quant_bits and n.quant_out:  # bitsandbytes' own matmul: autocast does not touch it
            out_bytes = n.quant_out
        out = T(f"{lin.name}.out", out_bytes, x.grad or self.trains or adapter is not None or self.m.biases_train)
        if adapter is not None:
            self._adapter(lin, x, adapter, out)
        return out

    def _adapter(self, lin: Linear, x: T, ad: Adapter, out: T) -> None:
        n, s = self.n, self.s
        if ad.kind == "ia3":  # output × learned vector: the vector's gradient needs the output
            s.add(f"{lin.name}.ia3_out", lin.d_out, out.nbytes)
            return
        if ad.kind == "ia3_ff":  # input × learned vector (in fp32, the vector's dtype)
            s.add(x.name if x.nbytes == 4 else f"{lin.name}.ia3_in", lin.d_in, 4)
            return
        # LoRA: B(A(dropout(x))) · scaling; PEFT casts x to the adapter's fp32 first
        if ad.dropout > 0:
            if x.grad:
                s.add(f"{lin.name}.drop_mask", lin.d_in, 2 if n.lora_uncast and n.mask == 4 else n.mask)
            if n.autocast:
                s.add(f"{lin.name}.a_in16", lin.d_in, 2)
            else:
                s.add(f"{lin.name}.drop_out", lin.d_in, 4)
        elif n.autocast:
            s.add(f"{lin.name}.a_in16", lin.d_in, 2)
        else:
            s.add(x.name, lin.d_in, x.nbytes)
        s.add(f"{lin.name}.a_out", ad.rank, n.act if n.autocast else 4)
        if ad.dora:  # magnitude scaling saves the base and the LoRA results; PEFT builds B·A by
            # running the adapter on an identity matrix, whose d_in × d_in input lora_A saves
            s.add(f"{lin.name}.dora", 2 * lin.d_out, out.nbytes)
            s.fixed.setdefault(f"{lin.name}.dora_eye", lin.d_in * (lin.d_in * (2 if n.autocast else 4) + ad.rank * 4))

    def attention(self, q: T, k: T, v: T) -> T:
        a, n, s = self.a, self.n, self.s
        if not (q.grad or k.grad or v.grad or self.m.prefix_tokens):
            return T("attn.out", n.act, False)
        b = n.act if n.autocast else q.nbytes
        # grouped keys/values are repeated to every head where SDPA takes a mask (or the prefix), and
        # by danlu_varlen_sdpa before it slices the samples
        repeat = n.attn != "flash_attention_2" and (n.mask_4d or self.m.prefix_tokens
                                                    or n.attn == VARLEN_SDPA) and a.kv_heads != a.heads
        kv = a.q_dim if repeat else a.kv_dim
        kv_scale = 1.0 + (self.m.prefix_tokens / max(self.seq, 1))  # keys include the virtual prefix
        s.add("attn.q", a.q_dim, b)
        s.add("attn.k", kv * kv_scale, b)
        s.add("attn.v", kv * kv_scale, b)
        s.add("attn.out", a.q_dim, b)
        if a.family.qk_norm:  # RMSNorm over head_dim on q and k saves their fp32 inputs
            s.add("attn.qk_norm", a.q_dim + a.kv_dim, 4)
        if n.attn == "eager":  # probabilities: fp32 softmax output, plus a 16-bit copy for the matmul
            s.add_quadratic("attn.probs", a.heads, 4 + (2 if n.autocast else 0))
            s.add("attn.out_t", a.q_dim, b)  # eager's output is transposed into a new tensor for o_proj
        else:
            s.add("attn.lse", a.heads, 4)
        if (n.mask_4d or self.m.prefix_tokens) and n.attn != "flash_attention_2":
            s.add_quadratic("attn.mask", 1, b)  # the bool mask becomes an additive float mask, per block
        if n.attn == VARLEN_SDPA:  # the samples' outputs (saved by SDPA) are concatenated into a
            return T("attn.out_cat", b, True)  # new tensor: o_proj saves that one when its weight trains
        return T("attn.out", b, True)

    def add(self, tag: str, x: T, y: T) -> T:
        return T(tag, x.nbytes if x.nbytes >= y.nbytes else y.nbytes, x.grad or y.grad)

    def mlp(self, lins: list[Linear], x: T) -> T:
        a, s, f = self.a, self.s, self.a.family
        by = {lin.name: lin for lin in lins}
        i = a.intermediate
        if f.mlp == "plain":
            h1 = self.linear(lins[0], x)
            if h1.grad:
                s.add(h1.name, i, h1.nbytes)  # GELU saves its input
            act = T("mlp.act", h1.nbytes, h1.grad)
            return self.linear(lins[1], act)
        if f.mlp == "gated_fused":
            gu = self.linear(by["gate_up_proj"], x)
            gate, up = T(gu.name, gu.nbytes, gu.grad), T(gu.name, gu.nbytes, gu.grad)
            if gu.grad:
                s.add(gu.name, 2 * i, gu.nbytes)
        else:
            gate, up = self.linear(by["gate_proj"], x), self.linear(by["up_proj"], x)
            if gate.grad:
                s.add(gate.name, i, gate.nbytes)  # SiLU saves its input
        act = T("mlp.act", gate.nbytes, gate.grad)
        if self.n.liger and f.mlp == "gated":  # Liger's SiLU-and-multiply saves gate and up, recomputes act
            if gate.grad or up.grad:
                s.add(gate.name, i, gate.nbytes)
                s.add(up.name, i, up.nbytes)
            return self.linear(by["down_proj"], T("mlp.prod", act.nbytes, act.grad or up.grad))
        if up.grad:
            s.add(act.name, i, act.nbytes)  # act × up saves act for up's gradient ...
        if act.grad and f.mlp == "gated":
            s.add(up.name, i, up.nbytes)  # ... and up for act's gradient
        prod = T("mlp.prod", act.nbytes, act.grad or up.grad)
        return self.linear(by["down_proj"], prod)

    # -- the block ----------------------------------------------------------------------------
    def run(self, seq: int) -> Saved:
        self.seq = seq
        a, f = self.a, self.a.family
        lins = a.block_linears()
        attn_lins = [lin for lin in lins if lin.kind == "attn"]
        mlp_lins = [lin for lin in lins if lin.kind == "mlp"]
        x = self.x
        h = self.norm("ln1", x, a.hidden) if f.norms != 0 and not f.encoder else x
        if f.qkv_fused:
            qkv = self.linear(attn_lins[0], h)
            q = k = v = qkv
        else:
            q, k, v = (self.linear(lin, h) for lin in attn_lins[:3])
        o = self.linear(attn_lins[-1], self.attention(q, k, v))
        if f.norms == 4:
            o = self.norm("ln_post_attn", o, a.hidden)
        if f.norms == 1:  # phi: attention and MLP in parallel from the same normed input
            m = self.mlp(mlp_lins, h)
            return self._finish(self.add("x_out", self.add("x2", x, o), m))
        x2 = self.add("x2", x, o)
        if f.encoder:  # BERT: post-LN around each sub-layer; hidden dropout masks after both
            x2 = self.norm("ln_attn", x2, a.hidden)
            if x2.grad:
                self.s.add("dropout.masks", 2 * a.hidden, self.n.mask)
        h2 = self.norm("ln2", x2, a.hidden) if not f.encoder else x2
        m = self.mlp(mlp_lins, h2)
        if f.norms == 4:
            m = self.norm("ln_post_mlp", m, a.hidden)
        out = self.add("x_out", x2, m)
        if f.encoder:
            out = self.norm("ln_out", out, a.hidden)
        return self._finish(out)

    def _finish(self, out: T) -> Saved:
        if self.m.bottleneck:  # bottleneck adapters: input, down-projection and activation, per adapter
            per = self.m.bottleneck_per_block
            self.s.add("adapter.in", per * self.a.hidden, out.nbytes)
            self.s.add("adapter.mid", per * 2 * self.m.bottleneck, self.n.act if self.n.autocast else 4)
        self.grad_out = out.grad
        return self.s


def block_saved(arch: Arch, shape: MethodShape, num: Numerics, *, trains: bool, grad_in: bool,
                seq: int) -> tuple[Saved, bool]:
    """Saved tensors of one block, and whether its output needs a gradient."""
    walk = BlockWalk(arch, shape, num, trains=trains, grad_in=grad_in)
    saved = walk.run(seq)
    return saved, walk.grad_out


@dataclass
class Activations:
    blocks: float  # bytes saved by all blocks (or their checkpointed inputs)
    recompute: float  # one block's saved tensors on the GPU in backward (rebuilt, or brought back from host)
    head: float  # final norm and the output layer's input
    per_block: list[float]  # bytes each block saves without checkpointing (with it, the forward
    # still makes these tensors, then frees them)


def activation_bytes(arch: Arch, shape: MethodShape, num: Numerics, *, batch: int, seq: int,
                     checkpointing: bool) -> Activations:
    """Saved activations for one micro-batch of `batch` rows × `seq` tokens (virtual tokens of
    prompt tuning included), with or without gradient checkpointing of every block."""
    tokens_seq = seq + shape.prompt_tokens
    tokens = batch * tokens_seq
    key_len = tokens_seq + shape.prefix_tokens
    grad = shape.embeddings_train or shape.prompt_tokens > 0
    first_trained = arch.layers - shape.trainable_blocks if shape.trainable_blocks else arch.layers
    per_block: list[float] = []
    walks: dict[tuple[bool, bool], tuple[float, bool]] = {}  # blocks differ only in these two flags
    for layer in range(arch.layers):
        key = (layer >= first_trained, grad)
        if key not in walks:
            saved, grad_out = block_saved(arch, shape, num, trains=key[0], grad_in=grad, seq=tokens_seq)
            walks[key] = (saved.bytes(tokens, key_len), grad_out)
        nbytes, grad = walks[key]
        per_block.append(nbytes)
    # RoPE cos and sin, shared by all blocks, in the dtype of the hidden states
    head = 2.0 * tokens * arch.head_dim * num.stream if not arch.is_encoder else 0.0
    if grad:  # the final norm saves its input (fp32 copy; Liger: as is); the output layer's input when it trains
        head += tokens * arch.hidden * (num.stream if num.liger else 4)
    if shape.embeddings_train:
        head += tokens * arch.hidden * (4 + (2 if num.autocast else num.stream))
    if checkpointing:
        inputs = arch.layers * tokens * arch.hidden * num.stream
        return Activations(inputs, max(per_block), head, per_block)
    return Activations(sum(per_block), 0.0, head, per_block)


def offloaded(act: Activations, *, checkpointing: bool) -> tuple[Activations, float]:
    """train.offload_activations on CUDA: (what stays on the GPU, bytes moved to host memory).
    Checkpointed: each block's checkpointed input goes to pinned host memory (transformers'
    offloaded checkpointing); the head's tensors and one recomputed block stay. Not
    checkpointed: every saved tensor goes (save_on_cpu around the forward) and comes back one
    op at a time in backward, bounded here by the largest block's saved tensors."""
    if checkpointing:
        return Activations(0.0, act.recompute, act.head, act.per_block), act.blocks
    return Activations(0.0, max(act.per_block, default=0.0), 0.0, act.per_block), act.blocks + act.head
