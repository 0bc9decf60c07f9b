"""RunConfig: the one typed definition that drives the YAML file, the CLI overrides, the web UI
form and the docs table. Sections: model / data / method / stage / train / eval / output_dir,
plus one options section per stage that has options (`dpo:`, `distill:` ...), all validated
strictly: an unknown key is an error that names the closest valid key."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, create_model, field_validator, model_validator

from danlu.eval.judge import JudgeConfig
from danlu.schema_base import SEED_MAX, StrictModel

Auto = Literal["auto"]


class ModelConfig(StrictModel):
    name_or_path: str = Field(
        ..., description="Hub id (Qwen/Qwen2.5-0.5B-Instruct), a local directory, a .gguf file (or a folder "
        "holding one; dequantised once into $DANLU_HOME), a packaged real model (pkg:smollm2-135m-instruct, "
        "pkg:gemma3-270m) or builtin:tiny / builtin:small; `danlu models` lists the named ones."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to load.")
    trust_remote_code: bool = Field(False, description="Allow a model's own Python code to run. Off unless you set it.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Storage dtype of frozen weights. auto: bf16 on GPUs that support it and on CPUs that compute in bf16 (not under a quantised base), else fp32."
    )
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto", description="Attention kernel. auto: flash_attention_2 on CUDA when flash-attn is installed and "
        "compute is bf16/fp16 (packing is then padding-free varlen); a packed run on a CPU: danlu's per-sample "
        "causal SDPA on padding-free varlen rows; else sdpa."
    )
    adapter: str | None = Field(
        None, description="An earlier adapter to train on: a run directory (runs/my-sft) or a PEFT adapter folder "
        "(SFT → DPO/KTO/ORPO on the same LoRA, or SFT again on new data). A run given as name_or_path sets this.",
    )
    adapter_mode: Literal["continue", "stack"] = Field(
        "continue", description="continue: train that adapter further (its method options are kept); stack: merge "
        "it into the base, frozen, and train a new adapter on top.",
    )

    @model_validator(mode="before")
    @classmethod
    def _run_as_model(cls, data):
        from danlu.models.chain import split_run_dir

        return split_run_dir(data)


class DataConfig(StrictModel):
    train: str | list[str] = Field(
        ...,
        description="Training data: file(s) (.jsonl .json .csv .parquet), a hub dataset name, or lf:NAME "
        "(an entry of dataset_dir/dataset_info.json, read as LLaMA-Factory reads it).",
    )
    eval: str | list[str] | None = Field(None, description="Evaluation data file(s) or lf:NAME; else see eval_split.")
    dataset_dir: str = Field(
        "data", description="Folder holding a LLaMA-Factory dataset_info.json, for lf:NAME sources."
    )
    eval_split: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of train held out for eval when no eval file.")
    format: str = Field(
        "auto", description="alpaca | sharegpt | messages | prompt_response | text | auto (detected and reported)."
    )
    template: str = Field(
        "auto",
        description="Chat template: auto (the tokenizer's own; without one, the family its special tokens name, e.g. "
                    "gemma), chatml, qwen, llama3, mistral, gemma, default, or a .jinja file.",
    )
    system: str | None = Field(None, description="System prompt for samples that have none.")
    placeholders: dict[str, str] = Field(
        default_factory=dict,
        description="Fill {{key}} in every text of the data, e.g. {name: Acme助手, author: Acme} "
        "for an identity dataset.",
    )
    train_on_prompt: bool = Field(False, description="Also put loss on user/system tokens (default: assistant only).")
    mask_history: bool = Field(False, description="Put loss on the last assistant turn only.")
    on_bad_row: Literal["skip", "error"] = Field(
        "skip", description="Malformed row: skip (count and report with file:line) or error (exit 2 at the first)."
    )
    overlong: Literal["truncate", "drop", "error"] = Field(
        "truncate", description="Sample longer than train.max_length: truncate, drop, or error."
    )
    packing: bool = Field(
        True, description="Pack samples with no padding and no attention across samples: varlen rows under "
        "flash-attention and on CPU (auto attention), rows with a block-diagonal mask under sdpa/eager."
    )
    max_samples: int | None = Field(None, ge=1, description="Use at most this many training rows (after reading).")
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="Images (vision-language data) with more pixels (width × height) are bad rows: "
        "skipped and reported with file:line, or exit 2 under on_bad_row: error. Missing and unreadable images too.",
    )
    shuffle_seed: int | None = Field(None, ge=0, le=SEED_MAX, description="Seed for the eval_split; defaults to train.seed.")

    @field_validator("train", "eval")
    @classmethod
    def _non_empty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("give at least one file")
        return v


def _steps_not_zero(v: int) -> int:
    if v == 0:
        raise ValueError("0 steps trains nothing; give a positive number of steps, or -1 to train for train.epochs")
    return v


class TrainConfig(StrictModel):
    epochs: float = Field(3.0, gt=0, description="Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimizer steps (-1: use epochs).")
    learning_rate: Annotated[float, Field(gt=0)] | Auto = Field(
        "auto", description="Peak learning rate (> 0); auto follows the model size and method (shown in config.yaml)."
    )
    batch_size: int = Field(4, ge=1, description="Samples per device per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step (loss normalised over them).")
    max_length: int = Field(1024, ge=8, description="Maximum tokens per sample (see data.overlong).")
    seed: int = Field(42, ge=0, le=SEED_MAX, description="Seed for weights of new parameters, data order and dropout.")
    deterministic: bool = Field(False, description="Deterministic kernels; bit-exact reruns and resume on CPU.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of steps spent warming up.")
    warmup_steps: int = Field(0, ge=0, description="Warmup steps (overrides warmup_ratio when > 0).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0: off).")
    optimizer: Literal["adamw", "adamw_8bit", "paged_adamw_8bit", "sgd", "adafactor"] = Field(
        "adamw", description="Optimizer."
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Compute precision. auto: bf16 autocast on GPUs and CPUs with native bf16 (AMX/AVX512-BF16), else fp32.",
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    offload_activations: bool = Field(
        False, description="CUDA: keep saved activations in pinned CPU memory until backward (with gradient "
        "checkpointing: each block's checkpointed input). Less GPU memory, slower steps. No effect on CPU.",
    )
    liger_kernel: bool | Auto = Field(
        "auto", description="Liger's Triton kernels (RMSNorm, RoPE, SwiGLU) for sft/pretrain. auto: on with a CUDA GPU "
        "and liger-kernel installed (pip install 'danlu[gpu]'); true: required (error without them).",
    )
    group_by_length: bool = Field(
        False, description="Without packing: batch samples of similar length together (less padding; order less random)."
    )
    fused_loss: bool = Field(
        True, description="Chunked linear + cross-entropy: never materialise full-vocabulary logits (where exact)."
    )
    compile: bool = Field(
        False, description="torch.compile the model (inductor). Pays on long runs: on the CPU bench 1.46x the "
        "steady-state tokens/s after ~2 minutes of compiling; off by default.",
    )
    release_memory: bool = Field(
        True, description="CPU runs: hand freed heap memory back to the OS every 4 optimizer steps (glibc malloc_trim): "
        "peak RSS follows live memory, for a few % of speed. No effect on GPU runs.",
    )
    logging_steps: int = Field(10, ge=1, description="Write metrics.jsonl and the progress bar every N steps.")
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps (default: once per epoch).")
    save_total_limit: int | None = Field(3, ge=1, description="Keep at most N checkpoints (newest and best are kept).")
    resume: Literal["auto", "never"] | str = Field(
        "never", description="auto: continue from the latest complete checkpoint; or a checkpoint path."
    )
    max_bad_steps: int = Field(10, ge=1, description="Stop after this many NaN/inf losses in a row (each is skipped).")
    report_to: list[str] = Field(["tensorboard"], description="Loggers: tensorboard, wandb, mlflow, swanlab, or [].")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    distributed: Literal["none", "ddp", "fsdp", "zero1", "zero2", "zero3"] = Field(
        "none",
        description="Multi-process strategy (launch with --nproc N): ddp (replicas), fsdp (FSDP2 sharding), "
        "zero1/zero2/zero3 (DeepSpeed ZeRO). none: plain DDP when several processes are launched.",
    )
    offload: Literal["none", "optimizer", "params"] = Field(
        "none", description="Move state to CPU RAM: optimizer (zero1-3), params (zero3; fsdp offloads all state)."
    )
    ddp_timeout: int = Field(
        1800, ge=10, description="Seconds a process waits for the others in a collective before the job stops."
    )

    @field_validator("max_steps")
    @classmethod
    def _max_steps_not_zero(cls, v):
        return _steps_not_zero(v)


class EarlyStoppingConfig(StrictModel):
    metric: str = Field("eval_loss", description="eval_loss, or eval_<name> of a metric in eval.metrics.")
    patience: int = Field(3, ge=1, description="Stop after this many evaluations in a row without improvement.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement.")


class EvalConfig(StrictModel):
    strategy: Literal["no", "steps", "epoch"] = Field(
        "epoch", description="When to compute eval loss during training (needs eval data)."
    )
    steps: int | None = Field(None, ge=1, description="Evaluate every N steps when strategy is steps.")
    batch_size: int = Field(8, ge=1, description="Eval batch size.")
    metrics: list[str] = Field(
        [], description="Metrics on generated answers at each evaluation, beside eval_loss "
        "(exact_match, token_f1, bleu, chrf, rouge1, rouge2, rougeL, accuracy, macro_f1, json_valid, schema_match).",
    )
    max_samples: int = Field(64, ge=1, description="Eval samples answered for those metrics at each evaluation.")
    max_new_tokens: int = Field(128, ge=1, description="Longest generated answer for those metrics.")
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="Stop training when the metric has not improved for `patience` evaluations."
    )
    judge: JudgeConfig | None = Field(None, description="LLM judge used by `danlu eval --judge`.")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v):
        from danlu.eval.metrics import METRICS

        for name in v:
            if name not in METRICS:
                from danlu.errors import closest

                near = closest(name, METRICS.names())
                raise ValueError(f"unknown metric {name!r}" + (f" (did you mean {near!r}?)" if near else "")
                                 + f"; choose from {', '.join(METRICS.names())}")
        return v

    @model_validator(mode="after")
    def _early_stopping_metric(self):
        es = self.early_stopping
        if es is None:
            return self
        allowed = ["eval_loss"] + [f"eval_{m}" for m in self.metrics]
        if es.metric not in allowed:
            raise ValueError(f"early_stopping.metric {es.metric!r} is not computed; choose from {', '.join(allowed)} "
                             "(add the metric to eval.metrics first)")
        if self.strategy == "no":
            raise ValueError("early_stopping needs evaluation: set eval.strategy to steps or epoch")
        return self


class RunConfigBase(StrictModel):
    model: ModelConfig
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output_dir: str = Field("runs/danlu", description="Run directory: config, metrics, checkpoints, final artefact.")
    overwrite_output_dir: bool = Field(
        False, description="Delete an earlier run in output_dir before training (as `danlu train --overwrite`)."
    )

    @field_validator("output_dir")
    @classmethod
    def _output_dir_is_a_directory(cls, v: str) -> str:
        """A file, a device (/dev/null) or a path under a file cannot hold a run."""
        path = Path(v).expanduser()
        for p in (path, *path.parents):
            if p.exists():
                if not p.is_dir():
                    what = "a file" if p.is_file() else "not a directory (a device or other special file)"
                    raise ValueError(f"{p} is {what}; give a directory to write the run into (created if missing)")
                break
        return v

    def stage_options(self):
        """The options section of the chosen stage (a StageConfig instance)."""
        return getattr(self, self.stage)

    def to_yaml_dict(self) -> dict[str, Any]:
        """The resolved config as plain data, with only the chosen stage's options section."""
        from danlu.stages.registry import STAGES

        out = self.model_dump(mode="json", by_alias=False)
        for name, _ in STAGES:
            if name != self.stage:
                out.pop(name, None)
        return out


@lru_cache(maxsize=1)
def get_run_config_class() -> type[RunConfigBase]:
    """Build RunConfig from the method and stage registries (import-light: no torch)."""
    import danlu.methods  # noqa: F401  (registers every method)
    import danlu.stages  # noqa: F401  (registers every stage)
    from danlu.methods.registry import METHODS
    from danlu.stages.registry import STAGES

    method_types = tuple(cls for _, cls in METHODS)
    method_union = Annotated[Union[method_types], Field(discriminator="name")]  # noqa: UP007
    stage_names = tuple(name for name, _ in STAGES)
    fields: dict[str, Any] = {
        "method": (method_union, Field(..., description="Fine-tuning method: what becomes trainable.")),
        "stage": (Literal[stage_names], Field("sft", description="Training objective: " + ", ".join(stage_names))),
    }
    for name, cls in STAGES:
        fields[name] = (cls, Field(default_factory=cls, description=f"Options of stage {name}."))
    return create_model("RunConfig", __base__=RunConfigBase, **fields)


def __getattr__(name):  # `from danlu.config.schema import RunConfig`
    if name == "RunConfig":
        return get_run_config_class()
    raise AttributeError(name)
