"""A LLaMA-Factory training YAML (`llamafactory-cli train x.yaml`) → a danlu config.

Every key of the source ends in exactly one of three lists, all shown to the user and written
into the output file's header: mapped (with what it became), not needed in danlu (e.g.
`overwrite_cache`), or no equivalent (dropped, and said so). Where LLaMA-Factory's default
differs from danlu's and changes the training (learning rate 5e-5, linear schedule, no warmup,
LoRA rank 8 and dropout 0, cutoff_len 2048, no packing, gradient checkpointing on), the
converted config writes LLaMA-Factory's value, so the run is the same run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from danlu.errors import ConfigError

# LLaMA-Factory key → danlu key (same meaning, value converted by type)
SIMPLE: dict[str, tuple[str, type]] = {
    "model_name_or_path": ("model.name_or_path", str),
    "model_revision": ("model.revision", str),
    "trust_remote_code": ("model.trust_remote_code", bool),
    "dataset_dir": ("data.dataset_dir", str),
    "default_system": ("data.system", str),
    "cutoff_len": ("train.max_length", int),
    "max_samples": ("data.max_samples", int),
    "train_on_prompt": ("data.train_on_prompt", bool),
    "mask_history": ("data.mask_history", bool),
    "output_dir": ("output_dir", str),
    "overwrite_output_dir": ("overwrite_output_dir", bool),
    "logging_steps": ("train.logging_steps", int),
    "save_steps": ("train.save_steps", int),
    "save_total_limit": ("train.save_total_limit", int),
    "per_device_train_batch_size": ("train.batch_size", int),
    "gradient_accumulation_steps": ("train.grad_accum", int),
    "learning_rate": ("train.learning_rate", float),
    "num_train_epochs": ("train.epochs", float),
    "max_steps": ("train.max_steps", int),
    "warmup_ratio": ("train.warmup_ratio", float),
    "warmup_steps": ("train.warmup_steps", int),
    "weight_decay": ("train.weight_decay", float),
    "max_grad_norm": ("train.max_grad_norm", float),
    "enable_liger_kernel": ("train.liger_kernel", bool),
    "seed": ("train.seed", int),
    "full_determinism": ("train.deterministic", bool),
    "dataloader_num_workers": ("train.num_workers", int),
    "per_device_eval_batch_size": ("eval.batch_size", int),
    "eval_steps": ("eval.steps", int),
}
# keys that need nothing in danlu, and why
NOT_NEEDED = {
    "do_train": "danlu train always trains",
    "overwrite_cache": "danlu tokenises on every run; there is no cache to overwrite",
    "preprocessing_num_workers": "tokenisation runs in the training process",
    "plot_loss": "metrics.jsonl and TensorBoard logs are always written",
    "ddp_timeout": "set by danlu's launcher",
    "save_only_model": "danlu checkpoints always hold what resuming needs",
    "logging_dir": "logs go under output_dir",
    "quantization_method": "bitsandbytes (bnb) is danlu's quantisation for training",
}
# keys with no equivalent whose reason is worth more than "no danlu equivalent"
NO_EQUIVALENT = {
    "deepspeed": "danlu's config has no deepspeed key; ZeRO runs through an accelerate config at launch",
    "use_unsloth": "danlu does not patch models with Unsloth kernels",
    "neftune_noise_alpha": "NEFTune noise is not implemented in danlu",
    "tokenized_path": "danlu tokenises on every run (no saved tokenised dataset)",
    "streaming": "danlu reads files fully; hub datasets stream always",
    "mix_strategy": "danlu concatenates the datasets in order",
    "interleave_probs": "danlu concatenates the datasets in order",
    "do_predict": "use danlu eval after training",
    "predict_with_generate": "use danlu eval after training",
    "rope_scaling": "no RoPE scaling key in danlu's config",
}
# LLaMA-Factory's defaults that change the run when danlu's differ (written out when absent)
LF_DEFAULTS = {"learning_rate": 5e-5, "num_train_epochs": 3.0, "per_device_train_batch_size": 8,
               "gradient_accumulation_steps": 1, "lr_scheduler_type": "linear", "warmup_ratio": 0.0,
               "cutoff_len": 2048}
STAGES = {"sft": "sft", "pt": "pretrain", "rm": "reward", "ppo": "ppo", "dpo": "dpo", "kto": "kto"}
DPO_LOSSES = {"sigmoid": "sigmoid", "ipo": "ipo", "simpo": "simpo"}
TEMPLATES = ("chatml", "qwen", "llama3", "mistral", "default")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
OPTIMIZERS = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw", "adamw": "adamw",
              "adamw_bnb_8bit": "adamw_8bit", "adamw_8bit": "adamw_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
              "sgd": "sgd", "adafactor": "adafactor"}
ATTENTION = {"auto": "auto", "disabled": "eager", "sdpa": "sdpa", "fa2": "flash_attention_2"}
REPORTERS = ("tensorboard", "wandb", "mlflow", "swanlab")
DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")


@dataclass
class Conversion:
    config: dict = field(default_factory=dict)
    mapped: list[str] = field(default_factory=list)  # "lf_key: value → danlu.key: value"
    not_needed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # no equivalent: said so, never silent
    notes: list[str] = field(default_factory=list)
    where: dict = field(default_factory=dict)  # lf key → "file:line"

    def set(self, dotted: str, value, lf_key: str | None = None, raw=None) -> None:
        node = self.config
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        if lf_key is not None:
            self.mapped.append(f"{lf_key}: {_show(raw)} → {dotted}: {_show(value)}")

    def get(self, dotted: str, default=None):
        node = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def drop(self, key: str, value, reason: str) -> None:
        self.dropped.append(f"{key}: {_show(value)} — {reason}")

    def accounted(self) -> set[str]:
        """Every source key some list names (the test that nothing is dropped silently)."""
        keys = set()
        for item in self.mapped + self.not_needed + self.dropped:
            head = item.split(" → ")[0] if " → " in item else item.split(": ")[0]
            keys |= {k.split(":")[0].strip(" +()") for k in head.replace("(", ",").split(",")}
        return keys


def _show(value) -> str:
    return value if isinstance(value, str) else repr(value) if not isinstance(value, (int, float, bool)) else str(value)


def _typed(value, kind: type, key: str, where: str):
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false"):
                    raise ValueError(value)
                return value.lower() == "true"
            return bool(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}", where=where) from None


def convert(lf: dict, *, source: str = "<LLaMA-Factory config>", lines: dict | None = None) -> Conversion:
    """The danlu config for a LLaMA-Factory training config (as a dict), with every key accounted for."""
    out = Conversion(where={k: f"{source}:{lines[(k,)]}" if lines and (k,) in lines else source for k in lf})
    if not lf.get("model_name_or_path"):
        raise ConfigError("the LLaMA-Factory config has no model_name_or_path", where=source)
    used = _stage(lf, out) | _method(lf, out)
    for key, value in lf.items():
        if key in used:
            continue
        if key in SIMPLE:
            dotted, kind = SIMPLE[key]
            out.set(dotted, _typed(value, kind, key, out.where[key]), key, value)
        elif key in HANDLERS:
            HANDLERS[key](value, lf, out, key)
        elif key in NOT_NEEDED:
            out.not_needed.append(f"{key}: {_show(value)} — {NOT_NEEDED[key]}")
        elif value is None or value is False:
            out.not_needed.append(f"{key}: {_show(value)} — off")
        else:
            out.drop(key, value, NO_EQUIVALENT.get(key, "no danlu equivalent"))
    _write_defaults(lf, out)
    return out


def _write_defaults(lf: dict, out: Conversion) -> None:
    for key, value in LF_DEFAULTS.items():
        if key in lf or (key == "warmup_ratio" and "warmup_steps" in lf):
            continue
        dotted = {"lr_scheduler_type": "train.lr_scheduler"}.get(key) or SIMPLE[key][0]
        out.set(dotted, value)
        out.notes.append(f"{key} not given: LLaMA-Factory's default {value} written as {dotted}")
    if not any(k in lf for k in ("packing", "neat_packing")):
        out.set("data.packing", lf.get("stage", "sft") == "pt")
        out.notes.append("packing not given: LLaMA-Factory packs only for stage pt; data.packing set to match")
    if not lf.get("disable_gradient_checkpointing") and "gradient_checkpointing" not in out.config.get("train", {}):
        out.set("train.gradient_checkpointing", True)
        out.notes.append("LLaMA-Factory checkpoints gradients unless disable_gradient_checkpointing: true; "
                         "train.gradient_checkpointing: true")
    if "max_samples" in lf and isinstance(out.get("data.train"), list):
        out.notes.append("max_samples: LLaMA-Factory takes that many rows from each dataset; danlu's "
                         "data.max_samples caps the total")
    if ("val_size" in lf or "eval_dataset" in lf) and "eval_strategy" not in lf and "evaluation_strategy" not in lf:
        out.set("eval.strategy", "no")
        out.notes.append("eval_strategy not given: LLaMA-Factory's default 'no' (no evaluation during training)")


# --- stage and method -------------------------------------------------------------------------


def _stage(lf: dict, out: Conversion) -> set[str]:
    stage_lf = str(lf.get("stage", "sft"))
    if stage_lf not in STAGES:
        raise ConfigError(f"stage {stage_lf!r} has no danlu equivalent", where=out.where.get("stage"),
                          hint=f"LLaMA-Factory stages danlu reads: {', '.join(STAGES)}")
    stage = STAGES[stage_lf]
    used = {"stage", "pref_beta", "pref_loss", "pref_ftx", "simpo_gamma", "kto_chosen_weight", "kto_rejected_weight"}
    loss = str(lf.get("pref_loss", "sigmoid"))
    if stage == "dpo" and loss == "orpo":
        stage = "orpo"
    out.set("stage", stage)
    options: dict[str, Any] = {}
    if stage in ("dpo", "kto", "orpo") and "pref_beta" in lf:
        options["beta"] = float(lf["pref_beta"])
    if stage == "dpo":
        if loss in DPO_LOSSES:
            options["loss"] = DPO_LOSSES[loss]
        elif "pref_loss" in lf:
            out.drop("pref_loss", loss, "danlu's dpo stage has losses sigmoid, ipo, simpo (and stage orpo)")
        if "simpo_gamma" in lf and loss == "simpo":
            options["simpo_gamma"] = float(lf["simpo_gamma"])
        if lf.get("pref_ftx"):
            options["sft_weight"] = float(lf["pref_ftx"])
    if stage == "kto":
        for lf_key, key in (("kto_chosen_weight", "desirable_weight"), ("kto_rejected_weight", "undesirable_weight")):
            if lf_key in lf:
                options[key] = float(lf[lf_key])
    for lf_key in sorted(used - {"stage"}):
        if lf_key in lf and not _consumed(lf_key, stage, loss):
            _unused(out, lf_key, lf[lf_key], f"not used by stage {stage}")
    consumed = [k for k in sorted(used - {"stage"}) if k in lf and _consumed(k, stage, loss)]
    if options:
        out.set(stage, options)
    extra = f" (+ {', '.join(consumed)})" if consumed else ""
    out.mapped.append(f"stage{extra}: {stage_lf} → stage: {stage}" + (f", {stage}: {options}" if options else ""))
    return used


def _consumed(key: str, stage: str, loss: str) -> bool:
    return {"pref_beta": stage in ("dpo", "kto", "orpo"), "pref_loss": stage in ("dpo", "orpo"),
            "pref_ftx": stage == "dpo", "simpo_gamma": stage == "dpo" and loss == "simpo",
            "kto_chosen_weight": stage == "kto", "kto_rejected_weight": stage == "kto"}[key]


def _unused(out: Conversion, key: str, value, reason: str) -> None:
    """A key the chosen stage/method does not read: harmless when off, else dropped (and said)."""
    if value in (None, False, 0, "", "none", "all"):
        out.not_needed.append(f"{key}: {_show(value)} — {reason}")
    else:
        out.drop(key, value, reason)


LORA_KEYS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target", "additional_target", "use_dora",
             "use_rslora", "pissa_init", "loraplus_lr_ratio")
QUANT_KEYS = ("quantization_bit", "quantization_type", "double_quantization")
FREEZE_KEYS = ("freeze_trainable_layers", "freeze_trainable_modules", "freeze_extra_modules")


def _method(lf: dict, out: Conversion) -> set[str]:
    kind = str(lf.get("finetuning_type", "lora"))
    used = {"finetuning_type", *LORA_KEYS, *QUANT_KEYS, *FREEZE_KEYS}
    builders = {"lora": _lora, "full": lambda lf, out: {"name": "full"}, "freeze": _freeze}
    if kind not in builders:
        raise ConfigError(f"finetuning_type {kind!r} has no danlu equivalent", where=out.where.get("finetuning_type"),
                          hint="LLaMA-Factory's lora, full and freeze are read")
    method = builders[kind](lf, out)
    if kind != "lora" and lf.get("quantization_bit"):
        raise ConfigError(f"quantization_bit with finetuning_type {kind}: danlu quantises the base only for LoRA "
                          "(QLoRA)", where=out.where.get("quantization_bit"))
    relevant = {"lora": LORA_KEYS + QUANT_KEYS, "full": (), "freeze": FREEZE_KEYS}[kind]
    for key in sorted(used - {"finetuning_type", *relevant}):
        if key in lf:
            _unused(out, key, lf[key], f"not used with finetuning_type {kind}")
    consumed = [k for k in sorted(relevant) if k in lf]
    out.set("method", method)
    extra = f" (+ {', '.join(consumed)})" if consumed else ""
    out.mapped.append(f"finetuning_type{extra}: {kind} → method: {method}")
    return used


def _lora(lf: dict, out: Conversion) -> dict:
    target = lf.get("lora_target", "all")
    targets = [t.strip() for t in target.split(",")] if isinstance(target, str) else list(target)
    method: dict[str, Any] = {
        "name": "lora",
        "r": int(lf.get("lora_rank", 8)),
        "dropout": float(lf.get("lora_dropout", 0.0)),
        "target_modules": "all-linear" if targets == ["all"] else targets,
    }
    if lf.get("lora_alpha") is not None:
        method["alpha"] = float(lf["lora_alpha"])
    if lf.get("additional_target"):
        extra = lf["additional_target"]
        method["modules_to_save"] = [t.strip() for t in extra.split(",")] if isinstance(extra, str) else list(extra)
    for lf_key, key in (("use_dora", "use_dora"), ("use_rslora", "use_rslora")):
        if lf.get(lf_key):
            method[key] = True
    if lf.get("pissa_init"):
        method["init"] = "pissa"
    if lf.get("loraplus_lr_ratio"):
        method["lora_plus_ratio"] = float(lf["loraplus_lr_ratio"])
    bits = lf.get("quantization_bit")
    if bits:
        if int(bits) not in (4, 8):
            raise ConfigError(f"quantization_bit {bits}: danlu's QLoRA holds the base in 4 or 8 bits",
                              where=out.where.get("quantization_bit"))
        method["quantize"] = "int8" if int(bits) == 8 else str(lf.get("quantization_type", "nf4"))
        method["double_quant"] = bool(lf.get("double_quantization", True))
    if not all(k in lf for k in ("lora_rank", "lora_dropout")):
        out.notes.append("LoRA: LLaMA-Factory's defaults (rank 8, dropout 0, target all) written out where not given")
    return method


def _freeze(lf: dict, out: Conversion) -> dict:
    method: dict[str, Any] = {"name": "freeze", "layers": int(lf.get("freeze_trainable_layers", 2))}
    modules = lf.get("freeze_trainable_modules", "all")
    if modules != "all":
        out.drop("freeze_trainable_modules", modules, "danlu's freeze trains whole blocks (and named modules anywhere)")
    extra = lf.get("freeze_extra_modules")
    if extra:
        method["modules"] = [m.strip() for m in extra.split(",")] if isinstance(extra, str) else list(extra)
    return method


# --- keys that need a little translation ------------------------------------------------------


def _datasets(value, lf, out: Conversion, key: str) -> None:
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else [str(n).strip() for n in value]
    sources = [n if n.lower().endswith(DATA_SUFFIXES) or "/" in n else f"lf:{n}" for n in names if n]
    out.set("data.train" if key == "dataset" else "data.eval", sources[0] if len(sources) == 1 else sources, key, value)


def _template(value, lf, out: Conversion, key: str) -> None:
    name = str(value)
    if name in TEMPLATES:
        out.set("data.template", name, key, value)
        return
    out.set("data.template", "auto", key, value)
    out.notes.append(f"template {name!r}: danlu uses the model's own chat template (auto); check it with "
                     "`danlu data render CONFIG`, or name chatml / llama3 / mistral / a .jinja file")


def _scheduler(value, lf, out: Conversion, key: str) -> None:
    if value in SCHEDULERS:
        out.set("train.lr_scheduler", value, key, value)
    else:
        out.drop(key, value, f"danlu schedules: {', '.join(SCHEDULERS)}; cosine is used")
        out.set("train.lr_scheduler", "cosine")


def _optim(value, lf, out: Conversion, key: str) -> None:
    if value in OPTIMIZERS:
        out.set("train.optimizer", OPTIMIZERS[value], key, value)
    else:
        out.drop(key, value, f"danlu optimizers: {', '.join(sorted(set(OPTIMIZERS.values())))}; adamw is used")


def _report_to(value, lf, out: Conversion, key: str) -> None:
    items = [value] if isinstance(value, str) else list(value or [])
    if any(v in ("all",) for v in items):
        items = ["tensorboard"]
    kept = [v for v in items if v in REPORTERS]
    for v in items:
        if v not in REPORTERS and v != "none":
            out.drop(key, v, f"danlu reports to {', '.join(REPORTERS)}")
    out.set("train.report_to", kept, key, value)


def _precision(value, lf, out: Conversion, key: str) -> None:
    if not value:
        out.not_needed.append(f"{key}: false — off")
    elif key == "fp16":
        out.set("train.precision", "fp16", key, value)
    elif key == "pure_bf16":
        out.set("model.dtype", "bfloat16", key, value)
        out.set("train.precision", "bf16")
    else:
        out.set("train.precision", "auto", key, value)
        out.notes.append("bf16: true → train.precision: auto (bf16 wherever the hardware has it, else fp32); "
                         "write bf16 to force it")


def _flash_attn(value, lf, out: Conversion, key: str) -> None:
    if value in ATTENTION:
        out.set("model.attn_implementation", ATTENTION[value], key, value)
    else:
        out.drop(key, value, f"expected one of {', '.join(ATTENTION)}")


def _val_size(value, lf, out: Conversion, key: str) -> None:
    size = float(value)
    if 0 < size < 1:
        out.set("data.eval_split", size, key, value)
    elif size:
        out.drop(key, value, "danlu's data.eval_split is a fraction (< 1); a row count has no equivalent")
    else:
        out.not_needed.append(f"{key}: {_show(value)} — no held-out split")


def _eval_strategy(value, lf, out: Conversion, key: str) -> None:
    if value in ("no", "steps", "epoch"):
        out.set("eval.strategy", value, key, value)
    else:
        out.drop(key, value, "danlu's eval.strategy is no, steps or epoch")


def _packing(value, lf, out: Conversion, key: str) -> None:
    out.set("data.packing", bool(value) or bool(lf.get("packing")) or bool(lf.get("neat_packing")), key, value)
    if key == "packing" and value and not lf.get("neat_packing"):
        out.notes.append("packing: danlu always packs with a block-diagonal mask (LLaMA-Factory's neat_packing): "
                         "samples in one row never attend to each other")


def _gradient_checkpointing(value, lf, out: Conversion, key: str) -> None:
    on = not value if key == "disable_gradient_checkpointing" else bool(value)
    out.set("train.gradient_checkpointing", on, key, value)


def _unsloth_gc(value, lf, out: Conversion, key: str) -> None:
    """Unsloth's gradient checkpointing keeps the checkpointed activations in CPU memory."""
    if value:
        out.set("train.gradient_checkpointing", True, key, value)
        out.set("train.offload_activations", True, key, value)
    else:
        out.not_needed.append(f"{key}: {_show(value)} — off")


def _resume(value, lf, out: Conversion, key: str) -> None:
    if value is True or value == "auto":
        out.set("train.resume", "auto", key, value)
    elif value:
        out.set("train.resume", str(value), key, value)
    else:
        out.not_needed.append(f"{key}: {_show(value)} — unset")


def _adapter(value, lf, out: Conversion, key: str) -> None:
    """adapter_name_or_path (one adapter): continue it, or with create_new_adapter: true merge it
    and train a new one on top (LLaMA-Factory's semantics)."""
    if key == "create_new_adapter":
        if not lf.get("adapter_name_or_path"):
            out.not_needed.append(f"{key}: {_show(value)} — no adapter_name_or_path")
        return
    paths = [p.strip() for p in str(value).split(",") if p.strip()] if value else []
    if not paths:
        out.not_needed.append(f"{key}: {_show(value)} — unset")
        return
    if len(paths) > 1:
        out.drop(key, value, "danlu builds on one adapter (model.adapter); merge the earlier ones first "
                             "(danlu export RUN --merge -o DIR) and give DIR as model_name_or_path")
        return
    out.set("model.adapter", paths[0], key, value)
    mode = "stack" if lf.get("create_new_adapter") else "continue"
    out.set("model.adapter_mode", mode, "create_new_adapter" if "create_new_adapter" in lf else None,
            lf.get("create_new_adapter"))


HANDLERS = {
    "adapter_name_or_path": _adapter, "create_new_adapter": _adapter,
    "dataset": _datasets, "eval_dataset": _datasets, "template": _template, "lr_scheduler_type": _scheduler,
    "optim": _optim, "report_to": _report_to, "bf16": _precision, "fp16": _precision, "pure_bf16": _precision,
    "flash_attn": _flash_attn, "val_size": _val_size, "eval_strategy": _eval_strategy,
    "evaluation_strategy": _eval_strategy, "packing": _packing, "neat_packing": _packing,
    "gradient_checkpointing": _gradient_checkpointing, "disable_gradient_checkpointing": _gradient_checkpointing,
    "resume_from_checkpoint": _resume, "use_unsloth_gc": _unsloth_gc,
}


# --- files ------------------------------------------------------------------------------------

ORDER = ("model", "data", "method", "stage", *sorted(set(STAGES.values()) | {"orpo"}), "train", "eval", "output_dir")


def convert_file(path) -> Conversion:
    """Read a LLaMA-Factory YAML (or JSON) config and convert it."""
    from danlu.config.load import read_yaml

    data, lines = read_yaml(path)
    return convert(data, source=str(path), lines=lines)


def to_yaml(conv: Conversion, source: str) -> str:
    """The danlu config as YAML, headed by what was mapped, not needed and dropped."""
    import yaml

    head = [f"# Converted from {source} (LLaMA-Factory) by `danlu import-config`.",
            "# Check the data as the trainer will see it: danlu data render THIS_FILE"]
    sections = (("Mapped", conv.mapped), ("LLaMA-Factory defaults and differences", conv.notes),
                ("Not needed in danlu", conv.not_needed), ("NOT carried over (no danlu equivalent)", conv.dropped))
    for title, items in sections:
        if items:
            head += ["#", f"# {title}:"] + [f"#   {item}" for item in items]
    ordered = {k: conv.config[k] for k in ORDER if k in conv.config}
    ordered.update({k: v for k, v in conv.config.items() if k not in ordered})
    body = yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return "\n".join(head) + "\n\n" + body
