"""DPO family and reward model on a synthetic task with a known answer (chosen answers say "blue",
rejected ones "red"; see synthetic.py): after a few steps on builtin:tiny with LoRA the implicit
reward margin is positive on at least 90% of held-out pairs, and the reward model ranks at least
90% of them right. The margins are recomputed here from the saved artefact (policy with the
adapter, reference with it disabled), independently of the trainers' own logging."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import one_torch_thread, write_jsonl
from tests.unit.stages.synthetic import preference_rows, unpaired_rows

TRAIN = {"max_steps": 10, "batch_size": 8, "learning_rate": 1e-2, "logging_steps": 5, "max_length": 64,
         "report_to": [], "save_steps": 100, "warmup_ratio": 0.0}


one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    train = preference_rows(48, seed=1)
    held = preference_rows(24, seed=2)
    return {"train": write_jsonl(d / "train.jsonl", train), "kto": write_jsonl(d / "kto.jsonl", unpaired_rows(train)),
            "eval": write_jsonl(d / "eval.jsonl", held), "dir": d}


def train(tmp_path, data, stage: str, options: dict, method=None, train_file="train"):
    from danlu.config.load import load_config_dict
    from danlu.train.runner import run_training

    cfg = load_config_dict({
        "model": {"name_or_path": "builtin:tiny"},
        "data": {"train": str(data[train_file]), "eval": str(data["eval"])},
        "method": method or {"name": "lora", "r": 8}, "stage": stage, stage: options,
        "train": TRAIN, "eval": {"strategy": "no"}, "output_dir": str(tmp_path / "run"),
    })
    return run_training(cfg)


def held_out_ids(data):
    from danlu.chat.templates import resolve_template
    from danlu.data.dataset import iter_samples
    from danlu.models.load import load_tokenizer
    from danlu.stages._preference_data import encode_pair

    tok = load_tokenizer("builtin:tiny")
    tpl = resolve_template(tok, "auto")

    class Data:
        overlong = "truncate"

    return [encode_pair(s, tpl, Data, 64)[0] for s in iter_samples(str(data["eval"]), kinds=("preference",))]


@torch.no_grad()
def answer_logps(model, rows: list[dict], key: str) -> list[tuple[float, int]]:
    """Σ log p(answer token | everything before it) and the answer's length, for every row (one batch)."""
    seqs = [r["prompt_ids"] + r[key] for r in rows]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    logp = F.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)  # (B, T, V)
    out = []
    for b, r in enumerate(rows):
        start = len(r["prompt_ids"])
        out.append((sum(logp[b, start + i - 1, t].item() for i, t in enumerate(r[key])), len(r[key])))
    return out


def margin(kind: str, beta: float, pol: dict, ref: dict | None) -> float:
    (c, nc), (r, nr) = pol["chosen_ids"], pol["rejected_ids"]
    if kind == "simpo":
        return beta * (c / nc - r / nr)
    if kind == "orpo":
        def odds(x):
            return x - torch.log1p(-torch.exp(torch.tensor(x))).item()

        return odds(c / nc) - odds(r / nr)
    return beta * ((c - ref["chosen_ids"][0]) - (r - ref["rejected_ids"][0]))


def accuracy(model, rows, kind, beta) -> float:
    keys = ("chosen_ids", "rejected_ids")
    pol = {k: answer_logps(model, rows, k) for k in keys}
    ref = None
    if kind in ("dpo", "kto"):  # the reference: the base, i.e. the adapter switched off
        with model.disable_adapter():
            ref = {k: answer_logps(model, rows, k) for k in keys}
    wins = [margin(kind, beta, {k: pol[k][i] for k in keys}, ref and {k: ref[k][i] for k in keys}) > 0
            for i in range(len(rows))]
    return sum(wins) / len(rows)


CASES = [
    ("dpo", {"loss": "sigmoid"}, "dpo", "train"),
    ("dpo", {"loss": "ipo"}, "dpo", "train"),
    ("dpo", {"loss": "simpo", "beta": 2.0}, "simpo", "train"),
    ("orpo", {}, "orpo", "train"),
    ("kto", {}, "kto", "kto"),
]


@pytest.mark.parametrize("stage, options, kind, train_file", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_implicit_reward_margin_positive_on_held_out_pairs(tmp_path, data, stage, options, kind, train_file):
    from danlu.infer.load import load_for_inference

    rows = held_out_ids(data)
    beta = options.get("beta", 0.1)
    if kind in ("simpo", "orpo"):  # no reference: the untrained model must not already prefer "blue"
        base = load_for_inference("builtin:tiny", device="cpu").model
        assert accuracy(base, rows, kind, beta) < 0.75
    result = train(tmp_path, data, stage, options, train_file=train_file)
    assert result.info["eval_preference_accuracy"] >= 0.9, result.info
    model = load_for_inference(str(result.run_dir), device="cpu").model
    assert accuracy(model, rows, kind, beta) >= 0.9


def test_full_fine_tune_keeps_a_frozen_reference_and_adapters_do_not(tmp_path, data):
    """LoRA: no reference model in memory, no 'ref' adapter copy; full: a frozen copy of the base."""
    from danlu.config.load import load_config_dict
    from danlu.train.runner import build

    for method, expect_ref in (({"name": "lora", "r": 8}, False), ({"name": "full"}, True)):
        out = tmp_path / method["name"]
        out.mkdir()
        cfg = load_config_dict({"model": {"name_or_path": "builtin:tiny"}, "data": {"train": str(data["train"])},
                                "method": method, "stage": "dpo", "train": TRAIN, "output_dir": str(out)})
        ctx, train_ds, _ = build(cfg, run_dir=out)
        trainer = cfg.stage_options().build_trainer(ctx, train_ds, None)
        assert (trainer.ref_model is not None) == expect_ref
        if expect_ref:
            assert not any(p.requires_grad for p in trainer.ref_model.parameters())
            assert trainer.ref_model is not trainer.model
        else:
            assert list(trainer.model.peft_config) == ["default"]


def test_reward_model_ranks_held_out_pairs(tmp_path, data):
    from danlu.infer.load import load_for_inference

    rows = held_out_ids(data)

    def pairwise(model, pad: int):
        scores = []
        for key in ("chosen_ids", "rejected_ids"):
            seqs = [r["prompt_ids"] + r[key] for r in rows]
            width = max(map(len, seqs))
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
            with torch.no_grad():
                scores.append(model(input_ids=ids, attention_mask=(ids != pad).long()).logits[:, 0])
        return (scores[0] > scores[1]).float().mean().item()

    result = train(tmp_path, data, "reward", {})
    info = json.loads((result.run_dir / "run_info.json").read_text())
    assert info["eval_preference_accuracy"] >= 0.9
    loaded = load_for_inference(str(result.run_dir), device="cpu")
    assert loaded.info["task"] == "seq_cls" and loaded.model.config.num_labels == 1
    assert pairwise(loaded.model, loaded.tokenizer.pad_token_id) >= 0.9
