"""Rewards for the RL stages, named in config:

  regex:PATTERN        1.0 if the answer matches PATTERN (re.search), else 0.0
  contains:TEXT        1.0 if the answer contains TEXT, else 0.0
  json_valid           1.0 if the answer is one JSON value (a ```json fence around it is allowed)
  module:function      your own callable (a module on the Python path, run from the current directory)
  path/file.py:function

and a reward model (`reward_model:`): a sequence-classification model with one output that scores
the prompt and answer rendered with its own chat template.

Every reward follows TRL's reward-function protocol, so one function serves ppo, grpo and rloo:
`f(prompts, completions, **kwargs) -> list[float | None]`, where prompts are lists of messages,
completions are `[{"role": "assistant", "content": text}]`, and kwargs hold `completion_ids` and
the row's other fields (a None reward means "not applicable" and counts as 0)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from pathlib import Path

from danlu.errors import ConfigError, UserError

FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.S)


def completion_text(completion) -> str:
    """The answer's text from a conversational completion (a list of messages) or a plain string."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")


def _named(fn, name: str):
    fn.__name__ = name
    fn.__qualname__ = name
    return fn


def regex_reward(pattern: str, where: str):
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"regex:{pattern} is not a valid regular expression: {exc}", where=where) from None

    def reward(prompts=None, completions=(), **kwargs):
        return [1.0 if rx.search(completion_text(c)) else 0.0 for c in completions]

    return _named(reward, f"regex:{pattern}")


def contains_reward(text: str, where: str):
    if not text:
        raise ConfigError("contains: needs the text to look for (contains:TEXT)", where=where)

    def reward(prompts=None, completions=(), **kwargs):
        return [1.0 if text in completion_text(c) else 0.0 for c in completions]

    return _named(reward, f"contains:{text}")


def is_json(text: str) -> bool:
    text = text.strip()
    fenced = FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if not text:
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def json_valid_reward(prompts=None, completions=(), **kwargs):
    return [1.0 if is_json(completion_text(c)) else 0.0 for c in completions]


json_valid_reward.__name__ = "json_valid"


def user_function(spec: str, where: str):
    """`package.module:function` or `path/to/file.py:function` → the callable."""
    module_name, _, fn_name = spec.rpartition(":")
    hint = "write it as module:function (a module importable from the current directory) or path/to/file.py:function"
    if not module_name or not fn_name:
        raise ConfigError(f"{spec!r} is no reward function form ({REWARD_FORMS_TEXT})", where=where, hint=hint)
    try:
        module = _load_module(module_name)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc), where=where, hint=hint) from None
    except Exception as exc:  # noqa: BLE001 — the user's module may fail in any way; say where
        raise ConfigError(f"cannot import {module_name!r} for reward {spec!r}: {type(exc).__name__}: {exc}",
                          where=where, hint=hint) from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ConfigError(f"{module_name!r} has no function {fn_name!r}", where=where, hint=hint)
    return fn


def _load_module(name: str):
    if name.endswith(".py"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"reward module file {path} not found (paths are relative to the current directory)")
        spec = importlib.util.spec_from_file_location(f"danlu_reward_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    return importlib.import_module(name)


REWARD_FORMS_TEXT = "regex:PATTERN, contains:TEXT, json_valid, module:function, path/file.py:function"


def parse_reward_function(spec: str, where: str):
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("an empty reward function name", where=where, hint=REWARD_FORMS_TEXT)
    if spec == "json_valid":
        return json_valid_reward
    if spec.startswith("regex:"):
        return regex_reward(spec[len("regex:"):], where)
    if spec.startswith("contains:"):
        return contains_reward(spec[len("contains:"):], where)
    if ":" in spec:
        return user_function(spec, where)
    raise ConfigError(f"unknown reward function {spec!r}", where=where, hint=f"use one of: {REWARD_FORMS_TEXT}")


def parse_reward_functions(specs: list[str], *, where: str) -> list:
    return [parse_reward_function(s, f"{where}[{i}]") for i, s in enumerate(specs)]


def build_rewards(stage, ctx, *, where: str):
    """(callables, weights): reward functions in order, then the reward model if one is named."""
    funcs = parse_reward_functions(stage.reward_functions, where=f"{where}.reward_functions")
    if stage.reward_model:
        funcs.append(RewardModelScorer(stage.reward_model, where=f"{where}.reward_model",
                                       max_length=ctx.config.train.max_length))
    weights = list(stage.reward_weights) if stage.reward_weights is not None else [1.0] * len(funcs)
    return funcs, weights


class RewardModelScorer:
    """A reward model as a reward function: the score of prompt + answer (the model's one output,
    read at the last token). The answer is re-tokenised with the reward model's own tokenizer, so
    its vocabulary may differ from the policy's."""

    __name__ = "reward_model"

    def __init__(self, target: str, *, where: str, max_length: int = 1024, device: str | None = None):
        from danlu.infer.load import load_for_inference

        loaded = load_for_inference(target, task="seq_cls", device=device, merge=True)
        task = loaded.info.get("task", "seq_cls")
        if task != "seq_cls":
            raise UserError(f"{target} is a {task} model (stage {loaded.info.get('stage', '?')}), not a reward model",
                            where=where, hint="train one with stage: reward, or name a sequence-classification model")
        n_out = getattr(loaded.model.config, "num_labels", None)
        if n_out != 1:
            raise UserError(f"{target} is not a reward model: its head has {n_out} outputs (a reward model has one)",
                            where=where, hint="train one with stage: reward")
        self.model, self.tokenizer, self.max_length = loaded.model, loaded.tokenizer, max_length
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.requires_grad_(False)

    def render(self, prompt, completion) -> str:
        messages = [{"role": m["role"], "content": m.get("content") or ""} for m in prompt]
        messages.append({"role": "assistant", "content": completion_text(completion)})
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def __call__(self, prompts=None, completions=(), **kwargs) -> list[float]:
        import torch

        texts = [self.render(p, c) for p, c in zip(prompts, completions)]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length,
                             add_special_tokens=False, padding_side="right").to(self.model.device)
        with torch.no_grad():
            logits = self.model(**enc).logits  # (B, 1)
        return logits[:, 0].float().tolist()
