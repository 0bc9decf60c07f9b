"""Peak memory of a training run, term by term, on one device.

Terms (bytes on one device):
  weights       frozen base (bf16 on GPU and on a CPU computing in bf16, fp32 on a CPU computing
                in fp32, 4/8-bit packed for QLoRA) + trainable parameters (fp32 master copies)
  gradients     one per trainable parameter, in its dtype
  optimizer     AdamW 2 × fp32; 8-bit AdamW (plain or paged) ~2 B; SGD none
  autocast      bf16 copies of fp32 weights that autocast makes and autograd keeps for backward:
                trained weights, LoRA matrices, an fp32 output layer (QLoRA)
  activations   what autograd saves (activations.py), all blocks or, with gradient
                checkpointing, each block's input plus one block recomputed
  logits        vocabulary logits at label positions only (danlu's loss) and cross-entropy's
                buffers: 12 B per logit in fp32, 14 B under bf16 autocast (chunked: per chunk)
  stage         reference / teacher / reward / value models, generation KV cache
  runtime       CPU: the process a step starts from, besides the model's tensors (Python, torch,
                transformers, peft, trl, the Trainer; measured by bench/plan_calibrate.py), and
                the tokenizer (per vocabulary entry, loading.py); GPU: cuBLAS workspaces (the
                CUDA context is outside the allocator)
  allocator     CPU: heap pages glibc keeps resident during a step (fitted; see allocator_terms)
  loading       CPU: what only the loading phase holds (loading.py): a converted or quantised
                checkpoint's mapped pages, the tokenizer's load-time heap

The peak is the largest of the moments of a step — end of forward, start of backward (logit
gradients), optimizer step — each summing the tensors alive then, and on a CPU of the loading
phase before training. Under N GPUs the persistent
terms are divided as DDP, FSDP or ZeRO-1/2/3 divide them."""

from __future__ import annotations

from dataclasses import dataclass, field

from danlu import runplan
from danlu.plan.activations import Numerics, activation_bytes, offloaded
from danlu.plan.batches import worst_batch
from danlu.plan.calibration import calibration
from danlu.plan.loading import checkpoint_bytes, loading_terms, mapped_checkpoint, tokenizer_bytes
from danlu.plan.stages import stage_shape
from danlu.plan.terms import GiB, Term, gb

OPTIMIZER_BYTES = {"adamw": 8.0, "adamw_8bit": 2.03, "paged_adamw_8bit": 2.03, "sgd": 0.0, "adafactor": 0.0}
DEEPSPEED_MASTER = 4.0  # ZeRO keeps an fp32 master copy of trainable weights in the optimizer partition


@dataclass
class MemoryEstimate:
    terms: list[Term]
    peak_bytes: int
    peak_phase: str
    phases: dict[str, int]
    device_need_bytes: int  # peak + CUDA context + allocator fragmentation (GPU); = peak on CPU
    host_bytes: int = 0  # CPU memory for offloaded ZeRO states and offloaded activations
    notes: list[str] = field(default_factory=list)

    def term(self, key: str) -> float:
        return sum(t.bytes for t in self.terms if t.key == key)

    def to_dict(self) -> dict:
        return {"peak_bytes": self.peak_bytes, "peak_gib": round(self.peak_bytes / GiB, 3),
                "peak_phase": self.peak_phase, "device_need_bytes": self.device_need_bytes,
                "host_offload_bytes": self.host_bytes, "phases": self.phases,
                "terms": [t.to_dict() for t in self.terms], "notes": self.notes}


def numerics(spec) -> Numerics:
    """Bytes of activations and streams for this device and precision."""
    shape, low = spec.shape, spec.precision in ("bf16", "fp16")
    pure16 = spec.weight_dtype in ("bfloat16", "float16") or spec.strategy.startswith("zero")
    if not low:
        stream = 4
    elif pure16:
        stream = 2
    elif shape.trains_base or shape.quant_bits or _base_bytes_per_param(spec) == 4:
        # fp32 embeddings: trained (full), upcast by prepare_model_for_kbit_training, or an fp32 base
        stream = 4
    else:
        stream = 2
    # bitsandbytes' 4-bit matmul returns its compute dtype, fp32 on a CPU (danlu's
    # bnb_4bit_compute_dtype there), whatever autocast asks for
    quant_out = 4 if spec.device == "cpu" and shape.quant_bits == 4 else None
    # dropout masks: bool on CUDA; on a CPU a float noise tensor of the (fp32) LoRA input
    return Numerics(device=spec.device, autocast=low and not pure16, stream=stream, act=2 if low else 4,
                    mask=4 if spec.device == "cpu" else 1, attn=spec.attn,
                    mask_4d=spec.attn not in ("flash_attention_2", runplan.VARLEN_SDPA),
                    liger=spec.liger and spec.device == "cuda", quant_out=quant_out,
                    lora_uncast=low and not shape.quant_bits and not any(a.dora for a in shape.adapters.values()))


# ---- persistent terms ----------------------------------------------------------------------------
def _base_bytes_per_param(spec) -> float:
    """Bytes per frozen base parameter, as danlu.models.load.storage_dtype stores them: model.dtype
    when set; on a CPU bf16 when it computes in bf16 (AMX / AVX512-BF16), else fp32."""
    if spec.weight_dtype in ("bfloat16", "float16"):
        return 2.0
    if spec.weight_dtype == "float32" or spec.precision == "fp32":
        return 4.0
    if spec.device == "cpu":
        return 2.0 if spec.precision == "bf16" else 4.0
    return 2.0


def quantised_bytes(arch, bits: int, double_quant: bool) -> float:
    """Block linear weights packed by bitsandbytes: NF4 = 0.5 B + one absmax per 64 weights
    (8-bit with double quantisation, plus fp32 per 256 blocks); int8 = 1 B + fp32 scale per row."""
    n = arch.linear_params
    if bits == 4:
        return n * (0.5 + (1 / 64 + 4 / (64 * 256) if double_quant else 4 / 64))
    return n + 4 * arch.layers * sum(lin.d_out for lin in arch.block_linears())


def weight_terms(spec) -> tuple[list[Term], float]:
    """(terms, bytes of the model's own weights on one device before sharding)."""
    arch, shape = spec.arch, spec.shape
    n = arch.n_params
    if shape.trains_base:
        b = 2.0 if spec.weight_dtype in ("bfloat16", "float16") else 4.0
        if spec.strategy.startswith("zero"):
            b = 2.0
        return [Term("weights", n * b, f"{n:,} params × {b:g} B (trained in place)")], n * b
    base_b = 2.0 if spec.strategy.startswith("zero") else _base_bytes_per_param(spec)
    if shape.quant_bits:
        q = quantised_bytes(arch, shape.quant_bits, shape.double_quant)
        rest = n - arch.linear_params
        other_b = 4.0  # embeddings, norms, lm_head: fp32 (prepare_model_for_kbit_training upcasts on GPU)
        detail = (f"{arch.linear_params:,} block linear params in {shape.quant_bits}-bit = {gb(q)}; "
                  f"{rest:,} others × {other_b:g} B")
        base = q + rest * other_b
        if mapped_checkpoint(spec):
            ckpt = checkpoint_bytes(spec)
            detail = (f"{arch.linear_params:,} block linear params in {shape.quant_bits}-bit = {gb(q)}; the others "
                      f"stay fp32 views of the mapped {gb(ckpt)} fp32 checkpoint, whose pages, all read while "
                      "quantising, stay resident")
            base = q + ckpt
    else:
        base = n * base_b
        detail = f"{n:,} frozen params × {base_b:g} B"
    train = shape.trainable * 4.0
    return [Term("weights", base, detail),
            Term("trainable", train, f"{shape.trainable:,} trainable params × 4 B (fp32)")], base + train


def _trainable_total(spec, st) -> int:
    return spec.shape.trainable + sum(m.trainable for m in st.extra)


def optimizer_terms(spec, st) -> list[Term]:
    tr = _trainable_total(spec, st)
    per = OPTIMIZER_BYTES[spec.optimizer]
    detail = f"{tr:,} trainable × {per:g} B ({spec.optimizer})"
    if spec.optimizer == "adafactor":  # factored second moment: rows + columns per matrix
        per = 4.0 * 2 / max(spec.arch.hidden, 1) ** 0.5
        detail = f"{tr:,} trainable × ~{per:.2g} B (adafactor, factored)"
    if spec.strategy.startswith("zero"):
        per += DEEPSPEED_MASTER
        detail = f"{tr:,} trainable × ({per - DEEPSPEED_MASTER:g} + 4 fp32 master) B (DeepSpeed)"
    return [Term("optimizer", tr * per, detail)]


def grad_bytes_per_param(spec) -> float:
    if spec.strategy.startswith("zero"):
        return 2.0
    if spec.shape.trains_base and spec.weight_dtype in ("bfloat16", "float16"):
        return 2.0
    return 4.0


def autocast_cache(spec, num) -> float:
    """bf16 copies of fp32 weights made by autocast in forward and held for backward: the trained
    weights (full, freeze), or with a frozen base the LoRA matrices and an output layer kept in
    fp32 (QLoRA's prepare_model_for_kbit_training upcasts it; with the chunked loss the layer
    still runs on an empty sequence, and its cast weight is saved all the same)."""
    if not num.autocast or spec.strategy == "fsdp":
        return 0.0
    arch, shape = spec.arch, spec.shape
    if shape.trains_base:
        blocks = shape.trainable_blocks * sum(lin.d_in * lin.d_out for lin in arch.block_linears())
        head = arch.lm_head_matrix if shape.embeddings_train else 0
        return 2.0 * (blocks + head)
    lora = sum(ad.rank * (lin.d_in + lin.d_out) for lin in arch.block_linears()
               if (ad := shape.adapters.get(lin.name)) is not None and ad.kind == "lora") * arch.layers
    head = arch.lm_head_matrix if fp32_frozen_head(spec) else 0
    return 2.0 * (lora + head)


def fp32_frozen_head(spec) -> bool:
    """The output layer is frozen but stored in fp32 (a quantised base upcasts its other parts)."""
    return not spec.shape.embeddings_train and (spec.shape.quant_bits is not None or _base_bytes_per_param(spec) == 4)


def _frozen_bytes_per_param(spec) -> float | None:
    """Bytes per parameter as the weights are stored in memory (None: quantised)."""
    if spec.shape.quant_bits:
        return None
    if spec.shape.trains_base:
        return 2.0 if spec.weight_dtype in ("bfloat16", "float16") else 4.0
    return _base_bytes_per_param(spec)


# ---- per-step terms ------------------------------------------------------------------------------
def logits_bytes(spec, st, num, rows: int, seq: int | None = None) -> tuple[float, float, str]:
    """(forward peak, backward peak, detail) of the logits and cross-entropy buffers, for
    `rows` rows of `seq` tokens (default train.max_length)."""
    arch = spec.arch
    if not st.lm_logits:
        n = rows * max(st.head_outputs, 1) * 4
        return n, 2 * n, f"{rows} rows × {max(st.head_outputs, 1)} outputs"
    k = (seq or spec.max_length) + spec.shape.prompt_tokens  # label positions, worst case: every position
    tokens = rows * k
    if spec.fused_loss and not st.teacher_logits:
        return fused_loss_bytes(spec, num, tokens)
    chunk = min(tokens, spec.loss_chunk) if spec.loss_chunk else tokens
    low = num.autocast or num.act == 2
    fwd_b, bwd_b = (10, 14) if low else (8, 12)  # logits (+fp32 copy) + log-softmax; + two gradients
    n = chunk * arch.vocab
    detail = (f"{tokens:,} label positions × vocab {arch.vocab:,} × {bwd_b} B"
              + (f" (chunks of {chunk:,} tokens)" if chunk < tokens else " (not chunked)"))
    if st.teacher_logits:  # the teacher's distribution is saved for the KL term
        detail += "; + teacher probabilities × 4 B"
        return n * (fwd_b + 4), n * (bwd_b + 4), detail
    return n * fwd_b, n * bwd_b, detail


def fused_loss_bytes(spec, num, tokens: int) -> tuple[float, float, str]:
    """danlu's chunked linear + cross-entropy (train.fused_ce), per chunk of `c` tokens (c, V):
    fp32 logits and logsumexp's shifted copy (8 B); from the second chunk on the previous
    chunk's fp32 logits (softmaxed in place) are still referenced when the next ones are made
    (12 B; under bf16 the previous bf16 probabilities and the new bf16 product instead of the
    shifted copy: 4 + 2 + 2 + 4 B). An fp32 output layer under autocast is cast to bf16 for
    each matmul (2 B × V × d). Kept for backward: the output layer's input gathered at label
    positions, its valid rows and their gradient (3 × K × d in the stream's dtype), plus the
    layer's fp32 gradient (V, d) when it trains. Backward scales both gradients (one more copy)."""
    arch = spec.arch
    chunk = min(tokens, spec.loss_chunk or tokens)
    per_element = 8.0 if chunk >= tokens else 12.0
    cast = 2.0 * arch.lm_head_matrix if num.autocast and fp32_frozen_head(spec) else 0.0
    per_chunk = chunk * arch.vocab * per_element + cast
    hidden = 3.0 * tokens * arch.hidden * num.stream
    head = 4.0 * arch.lm_head_matrix if spec.shape.embeddings_train else 0.0
    fwd = per_chunk + hidden + head
    bwd = hidden + tokens * arch.hidden * num.stream + 2 * head
    detail = (f"chunked linear + cross-entropy: {chunk:,} of {tokens:,} label positions × vocab {arch.vocab:,} "
              f"× {per_element:g} B at a time; hidden states and their gradients kept (no full logits)")
    return fwd, bwd, detail


def extra_model_terms(spec, st, num) -> tuple[list[Term], float]:
    """(terms, transient bytes of their forward passes)."""
    terms, transient = [], 0.0
    b = 2.0 if spec.device == "cuda" and spec.precision != "fp32" else 4.0
    for m in st.extra:
        arch = m.arch or spec.arch
        w = m.params * b
        if m.trainable:
            w = m.params * (4.0 if spec.shape.trains_base else b) + (m.trainable * 4.0 if not spec.shape.trains_base else 0)
        terms.append(Term("stage", w, f"{m.role} model: {m.params:,} params × {b:g} B"))
        if m.forward_rows and st.lm_logits:
            rows = spec.batch_size * m.forward_rows
            transient = max(transient, rows * spec.max_length * arch.vocab * (num.act + 4))
    if st.generate_tokens:
        a = spec.arch
        tokens = spec.batch_size * (spec.max_length + st.generate_tokens)
        kv = tokens * a.layers * 2 * a.kv_dim * num.act
        terms.append(Term("stage", kv, f"KV cache: {tokens:,} tokens × {a.layers} layers × 2 × {a.kv_dim} × {num.act} B"))
    return terms, transient


def runtime_terms(spec) -> list[Term]:
    cal = calibration()
    if spec.device == "cpu":
        terms = [Term("runtime", cal.cpu_runtime_bytes,
                      "the training process at a step's start, besides the model's tensors (measured here)")]
        if cal.cpu_tokenizer_bytes_per_vocab:
            terms.append(Term("runtime", tokenizer_bytes(spec.arch.vocab),
                              f"tokenizer: vocabulary of {spec.arch.vocab:,} × "
                              f"{cal.cpu_tokenizer_bytes_per_vocab:g} B (measured)"))
        if spec.dataset_tokens:
            data = spec.dataset_tokens * cal.cpu_bytes_per_dataset_token
            terms.append(Term("runtime", data, f"tokenised dataset in memory: {spec.dataset_tokens:,} tokens"))
        return terms
    return [Term("runtime", cal.cuda_runtime_bytes, "cuBLAS workspaces and small buffers")]


def allocator_terms(spec, act) -> list[Term]:
    """CPU: glibc serves a tensor from its heap whenever a free chunk or the heap's top fits it
    (and raises its mmap threshold, up to 32 MiB, as it frees large blocks), so a step's tensors
    live on a heap that grows; the pages of the forward's freed temporaries stay resident until
    train.release_memory trims the heap after the optimizer step, and later tensors reuse only
    part of them. Modelled as a fraction of the block tensors the forward makes (what autograd
    saves without checkpointing; with it the forward makes the same tensors and frees them, and
    the bench measures the same retention), one fraction for all methods and sizes, fitted from
    the bench/plan_calibrate.py reading named in calibration.yaml (cpu.allocator_retention).
    Gradient accumulation adds ~25% to it (measured at 2 and 4 micro-batches; not modelled)."""
    if spec.device != "cpu":
        return []
    cal = calibration()
    made = sum(act.per_block)
    extra = cal.cpu_allocator_retention * made
    if not extra:
        return []
    return [Term("allocator", extra, f"heap pages kept during a step: {cal.cpu_allocator_retention:g} × "
                                     f"{gb(made)} of block activations made by the forward (fitted)")]


# ---- the peak ------------------------------------------------------------------------------------
def optimizer_step_transient(spec, st) -> float:
    """Temporaries of the optimizer step: CUDA's foreach AdamW makes one fp32 copy of all
    second moments (sqrt); the CPU path goes tensor by tensor (two temporaries of the largest)."""
    if spec.optimizer not in ("adamw",) or spec.strategy.startswith("zero"):
        return 0.0
    if spec.device == "cpu":
        return 2 * 4.0 * spec.shape.largest_trainable
    return 4.0 * _trainable_total(spec, st)


def estimate_memory(spec) -> MemoryEstimate:
    from danlu.plan.parallel import shard

    arch, shape, st, num = spec.arch, spec.shape, stage_shape(spec), numerics(spec)
    terms, model_bytes = weight_terms(spec)
    tr = _trainable_total(spec, st)
    gbp = grad_bytes_per_param(spec)
    terms.append(Term("gradients", tr * gbp, f"{tr:,} trainable × {gbp:g} B"))
    terms += optimizer_terms(spec, st)
    terms, host = shard(spec, terms)
    extra, extra_transient = extra_model_terms(spec, st, num)
    terms += extra
    cache = autocast_cache(spec, num)
    if cache:
        terms.append(Term("autocast", cache, "bf16 copies of the trained weights, kept for backward"))
    if shape.quant_bits:  # dequantised to bitsandbytes' compute dtype (fp32 on a CPU, bf16 on a GPU)
        big = max(lin.d_in * lin.d_out for lin in arch.block_linears()) * (num.quant_out or (num.act if num.autocast else 4))
        terms.append(Term("dequantised", big, "one weight dequantised for its matmul (the largest)"))
    batch = worst_batch(spec)  # batch_size × max_length, or the data's largest micro-batch when counted
    rows, seq = batch.rows * st.rows, batch.width
    act = activation_bytes(arch, shape, num, batch=rows, seq=seq, checkpointing=spec.gradient_checkpointing)
    ckpt = "checkpointed block inputs" if spec.gradient_checkpointing else "all blocks"
    if spec.offload_activations and spec.device == "cuda":
        act, moved = offloaded(act, checkpointing=spec.gradient_checkpointing)
        host += moved
        ckpt += ", offloaded to host memory"
        offload_note = (f"activation offload: {gb(moved)} copied to pinned host memory and back each micro-batch "
                        "(PCIe transfers on the compute stream: slower steps)")
    else:
        offload_note = None
    act, vision_note = _with_vision(spec, act, num, rows)
    terms.append(Term("activations", act.blocks + act.head,
                      f"{rows} rows × {seq} tokens, {arch.layers} blocks ({ckpt}), {num.attn}"
                      + (f"; {batch.note}" if batch.note else "") + vision_note))
    if act.recompute:
        back = "rebuilt" if spec.gradient_checkpointing else "brought back from host memory"
        terms.append(Term("recompute", act.recompute, f"one block's activations {back} during backward"))
    lf, lb, ldetail = logits_bytes(spec, st, num, rows, seq)
    terms.append(Term("logits", lb, ldetail))
    terms += runtime_terms(spec) + allocator_terms(spec, act)
    phases = _phases(spec, terms, act, lf, lb, extra_transient)
    if calibration().cpu_load_runtime_bytes:
        load_terms, phases_load = loading_terms(spec, model_bytes, _frozen_bytes_per_param(spec))
        terms += load_terms
        if load_terms:
            phases["loading"] = phases_load
    phase = max(phases, key=phases.get)
    peak = phases[phase]
    cal = calibration()
    need = peak if spec.device == "cpu" else peak * (1 + cal.cuda_fragmentation) + cal.cuda_context_bytes
    notes = list(shape.notes) + list(st.notes) + ([offload_note] if offload_note else [])
    if spec.device == "cpu" and not spec.release_memory:
        notes.append("train.release_memory is off: freed heap pages stay resident across steps, so the "
                     "process RSS can grow well past this peak")
    if spec.optimizer == "paged_adamw_8bit":
        notes.append("paged optimizer states can spill to CPU memory under pressure instead of failing")
    return MemoryEstimate(terms, int(peak), phase, {k: int(v) for k, v in phases.items()}, int(need), int(host), notes)


def _with_vision(spec, act, num, rows: int):
    """A vision-language model: the tower's activations for one image per sample join the blocks'."""
    from dataclasses import replace

    from danlu.plan.vision import tower_trains, vision_activation_bytes

    v = spec.arch.vision
    if v is None:
        return act, ""
    trains = tower_trains(spec.method)
    extra = vision_activation_bytes(v, rows, num.act, trains)
    note = (f"; vision tower: {rows} image(s) × {v.patches} patches ({'trained' if trains else 'frozen'}), "
            f"{v.image_tokens} image tokens each within the {spec.max_length} tokens")
    return replace(act, blocks=act.blocks + extra), note


def _phases(spec, terms: list[Term], act, lf: float, lb: float, extra_transient: float) -> dict[str, float]:
    """Bytes alive at each moment of a step (after the first: optimizer states exist)."""
    def total(*keys):
        return sum(t.bytes for t in terms if t.key in keys)

    # "allocator" (CPU) builds up in the forward and is released after the optimizer step: every
    # moment below has it
    held = total("weights", "trainable", "optimizer", "stage", "parallel", "runtime", "dequantised", "allocator")
    grads = total("gradients")
    accumulating = grads if spec.grad_accum > 1 else 0.0  # gradients live across micro-batches
    cache = total("autocast")
    acts = act.blocks + act.head
    head_grad = 4.0 * spec.arch.lm_head_matrix if spec.shape.embeddings_train and not accumulating else 0.0
    # offload without checkpointing: the block being computed keeps its tensors until they are copied out
    working = act.recompute if spec.offload_activations and not spec.gradient_checkpointing else 0.0
    phases = {
        "forward end": held + accumulating + cache + acts + working + lf + extra_transient,
        "backward start": held + accumulating + (0 if spec.gradient_checkpointing else cache) + acts + lb,
        "backward end": held + grads + act.recompute + head_grad,
        "optimizer step": held + grads + optimizer_step_transient(spec, stage_shape(spec)),
    }
    if spec.gradient_checkpointing:
        phases["recompute"] = held + accumulating + act.blocks + act.head + act.recompute + head_grad
    return phases
