"""The policy side of PPO: a value head on the policy's last hidden state, one forward pass that
gives both the answer tokens' log-probabilities and their values, the reference model's
log-probabilities (the base with the adapter switched off, or a frozen copy), and sampling.

Prompts are left-padded and answers right-padded, so every row's answer starts at the same
column `P` (the padded prompt width); position ids come from the attention mask, as in
generation, so a left-padded row sees the same positions in both."""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from danlu.stages.rl.ppo_core import completion_mask, entropy_of, logprobs_of


class ValueHead(nn.Module):
    """V(s_t) = w·h_t + b on the policy's last hidden state; starts at 0 (zero init)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, T, H) → (B, T)
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


def hidden_size(model) -> int:
    config = model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(config.hidden_size)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def answer_forward(model, input_ids, attention_mask, prompt_width: int, temperature: float, *,
                   value_head: nn.Module | None = None, keep_logits: bool = True, with_entropy: bool = False):
    """(log π of each answer token (B, C), values (B, C) or None, entropy (B, C) or None)."""
    n_answer = input_ids.shape[1] - prompt_width
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                  use_cache=False, output_hidden_states=value_head is not None)
    if keep_logits:
        kwargs["logits_to_keep"] = n_answer + 1  # positions P-1 … end
    out = model(**kwargs)
    # counted from the end: a method that prepends virtual tokens (prompt tuning) shifts the start
    logits = out.logits[:, -(n_answer + 1):-1].float() / temperature  # (B, C, V): predicts tokens P … P+C-1
    logp = logprobs_of(logits, input_ids[:, prompt_width:])
    values = None
    if value_head is not None:
        values = value_head(out.hidden_states[-1][:, -(n_answer + 1):-1])  # (B, C): V of the state before each
    entropy = entropy_of(logits) if with_entropy else None
    return logp, values, entropy


class Reference:
    """The reference policy for the KL penalty: the base model with the adapter disabled (no
    second copy in memory) when the policy is a PEFT model, else a frozen copy made at start."""

    def __init__(self, policy):
        from peft import PeftModel

        self.uses_adapter = isinstance(policy, PeftModel)
        self.copy = None
        if not self.uses_adapter:
            self.copy = copy.deepcopy(policy).eval()
            self.copy.requires_grad_(False)

    def logprobs(self, policy, input_ids, attention_mask, prompt_width, temperature, keep_logits=True):
        model = policy if self.uses_adapter else self.copy
        ctx = policy.disable_adapter() if self.uses_adapter else contextlib.nullcontext()
        with ctx, torch.no_grad():
            logp, _, _ = answer_forward(model, input_ids, attention_mask, prompt_width, temperature,
                                        keep_logits=keep_logits)
        return logp


@torch.no_grad()
def sample_answers(model, input_ids, attention_mask, *, max_new_tokens: int, temperature: float, stop_ids: list[int],
                   pad_id: int, greedy: bool = False):
    """Sample one answer per prompt from the full distribution at `temperature` (no top-k/top-p,
    so the log-probabilities PPO computes are those of the sampling distribution).
    → (answer tokens (B, C) padded with pad_id after the stop token, mask (B, C))."""
    was_training = model.training
    model.eval()
    try:
        out = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
            do_sample=not greedy, temperature=None if greedy else temperature, top_k=0 if not greedy else None,
            top_p=None, min_p=None, eos_token_id=stop_ids, pad_token_id=pad_id, use_cache=True,
        )
    finally:
        model.train(was_training)
    answers = out[:, input_ids.shape[1]:]
    mask = completion_mask(answers, stop_ids)
    return answers.masked_fill(mask == 0, pad_id), mask
