"""Per-row sampling: OpenAI's penalties, top_p, and seeds that do not depend on the batch."""

from __future__ import annotations

import torch

from danlu.serve.sampling import SamplingParams, choose, penalise, top_p_filter


class Row:
    def __init__(self, params, tokens=(), seed=None):
        self.params, self.tokens = params, list(tokens)
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None


def test_penalties_follow_openai_definition():
    row = torch.zeros(5)
    out = penalise(row, [1, 1, 3], presence=0.5, frequency=0.25)
    assert torch.allclose(out, torch.tensor([0.0, -1.0, 0.0, -0.75, 0.0]))
    assert torch.equal(row, torch.zeros(5)), "the input row is not modified"


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    assert torch.allclose(top_p_filter(probs.clone(), 0.7), torch.tensor([0.5, 0.3, 0, 0]) / 0.8)
    assert torch.allclose(top_p_filter(probs.clone(), 0.1), torch.tensor([1.0, 0, 0, 0]))
    assert torch.equal(top_p_filter(probs.clone(), 1.0), probs)


def test_greedy_rows_take_the_argmax_and_penalties_can_change_it():
    logits = torch.tensor([[0.0, 2.0, 1.9], [3.0, 0.0, 0.0]])
    greedy = SamplingParams(max_tokens=4, temperature=0.0)
    penalised = SamplingParams(max_tokens=4, temperature=0.0, frequency_penalty=1.0)
    assert choose(logits, [Row(greedy), Row(greedy)]) == [1, 0]
    assert choose(logits, [Row(penalised, tokens=[1]), Row(greedy)]) == [2, 0]


def test_a_seeded_row_samples_the_same_tokens_whatever_shares_its_batch():
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    p = SamplingParams(max_tokens=4, temperature=1.0, top_p=0.9)
    alone = [choose(logits[1:2], [Row(p, seed=7)])[0] for _ in range(1)]
    batch = choose(logits, [Row(p, seed=1), Row(p, seed=7), Row(p, seed=3)])
    assert batch[1] == alone[0]
