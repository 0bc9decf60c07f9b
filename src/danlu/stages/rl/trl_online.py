"""GRPO and RLOO through TRL's trainers, with danlu's checkpointing mixed in.

What danlu adds around TRL: prompts from danlu's data formats and chat template, the run's stop
tokens as the generation config's EOS, rewards named in config, trainable weights kept in fp32
(TRL casts QLoRA adapters to bf16, which this CPU runs hundreds of times slower and danlu keeps as
fp32 master weights anyway), and no second "ref" adapter in the saved artefact (TRL adds one to a
PEFT policy for the KL term; it is dropped before the artefact is written)."""

from __future__ import annotations

import logging

from danlu.errors import ConfigError, DataError
from danlu.stages._trl_common import keep_fp32_adapters

log = logging.getLogger(__name__)


def check_group_sizes(stage, args, n_prompts: int, has_eval: bool) -> None:
    key = stage.name
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    if per_step % stage.num_generations:
        raise ConfigError(
            f"{per_step} answers per optimizer step (train.batch_size × train.grad_accum × processes) is not a "
            f"multiple of {key}.num_generations={stage.num_generations}",
            where=f"{key}.num_generations",
            hint="each prompt's answers form one group: make train.batch_size × train.grad_accum a multiple of it")
    if per_step // stage.num_generations > n_prompts:
        raise DataError(f"{n_prompts} training prompts, fewer than one step needs ({per_step // stage.num_generations})",
                        where="data.train", hint="add prompts, or lower train.batch_size")
    if has_eval and (args.per_device_eval_batch_size * args.world_size) % stage.num_generations:
        raise ConfigError(f"eval.batch_size {args.per_device_eval_batch_size} is not a multiple of "
                          f"{key}.num_generations={stage.num_generations}", where="eval.batch_size")


def drop_reference_adapter(model) -> None:
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and "ref" in peft_config:
        model.delete_adapter("ref")
        model.set_adapter("default")


def trainer_class(base):
    """`base` (GRPOTrainer / RLOOTrainer) with danlu's mixin first; the ref adapter leaves at the end."""
    from danlu.train.trainer import DanluTrainerMixin

    def train(self, *args, **kwargs):
        output = base.train(self, *args, **kwargs)
        drop_reference_adapter(self.accelerator.unwrap_model(self.model))
        return output

    def log(self, logs, start_time=None):
        self.loss_tokens = int(self.state.num_input_tokens_seen)  # prompt + answer tokens, for tokens/s
        return base.log(self, logs, start_time)

    return type(f"Danlu{base.__name__}", (DanluTrainerMixin, base), {"train": train, "log": log})


def build_online_trainer(ctx, stage, train_items, eval_items, *, trainer_cls, config_cls, **options):
    """A GRPO/RLOO trainer for this run; `options` are the TRL config fields of the stage."""
    from danlu.stages.rl.prompts import to_hf_dataset
    from danlu.train.args import training_arguments
    from danlu.train.callbacks import standard_callbacks
    from danlu.train.trainer import quiet

    rewards, weights = stage.rewards(ctx)
    model, tok = ctx.model, ctx.tokenizer
    model.generation_config.eos_token_id = ctx.template.stop_token_ids()
    model.generation_config.pad_token_id = tok.pad_token_id
    has_eval = bool(eval_items)
    try:
        args = training_arguments(
            ctx, has_eval=has_eval, cls=config_cls, num_generations=stage.num_generations,
            max_completion_length=stage.max_completion_length, temperature=stage.temperature, top_k=0, top_p=1.0,
            reward_weights=weights, disable_dropout=True, log_completions=False, **options)
    except ValueError as exc:
        raise ConfigError(f"TRL rejected the {stage.name} settings: {exc}", where=stage.name) from None
    check_group_sizes(stage, args, len(train_items), has_eval)
    trainer = trainer_class(trainer_cls)(
        model=model,
        reward_funcs=rewards,
        args=args,
        train_dataset=to_hf_dataset(train_items),
        eval_dataset=to_hf_dataset(eval_items) if has_eval else None,
        processing_class=tok,
        callbacks=standard_callbacks(ctx),
    )
    keep_fp32_adapters(trainer.model)
    trainer.danlu = ctx
    quiet(trainer)
    return trainer
