"""Stages ppo, grpo, rloo and distill through the CLI on builtin models, on synthetic tasks with a
known answer:

- RLHF, the seeds' three steps: SFT teaches builtin:tiny to answer either "Thanks, happy to help."
  or "Please read the docs." (half each); a reward model learns to prefer the first; PPO then
  raises both the reward model's score and the share of answers with "Thanks".
- GRPO raises the share of "Thanks" answers with the built-in reward `contains:Thanks`.
- Distillation: a teacher trained on 512 samples knows each prompt's answer distribution; a
  student that sees 24 samples learns it better with the teacher (lower held-out loss than the
  same student trained on the same data and steps without it), and its KL to the teacher falls.
- Every stage runs with lora and with qlora; bad input exits 2 with the key and what to do.

Most runs call the CLI's entry point in this process (`danlu.cli.main.main`: the same argument
parsing, config loading, errors and exit codes as `python -m danlu`, without ~10 s of imports
each); one PPO run goes through a real `python -m danlu` subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

import pytest
import torch

from tests.conftest import one_torch_thread, run_cli, tiny_config, write_jsonl

QUESTIONS = [
    "What is FlowDesk?", "How much is the Team plan?", "Is there a free trial?", "Where is my data stored?",
    "How do I export data?", "Which integrations exist?", "How do I reset my password?", "Can I cancel anytime?",
    "Do you offer discounts?", "What languages are supported?", "Is there an API?", "How do I add agents?",
    "Can I use my own domain?", "How fast is support?", "Is SSO available?", "What is the uptime?",
]
THANKS, DOCS = "Thanks, happy to help.", "Please read the docs."
RL_TRAIN = {"batch_size": 8, "learning_rate": 1e-3, "warmup_ratio": 0.0, "lr_scheduler": "constant",
            "max_length": 64, "logging_steps": 1}


one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def danlu(*args: str) -> tuple[int, str]:
    """`danlu ARGS` through the CLI's entry point in this process → (exit code, stdout + stderr)."""
    from danlu.cli.main import main

    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(buffer):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
    return code, buffer.getvalue()


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


# ---- fixtures: an SFT policy, a reward model, prompts -------------------------------------------
@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rl") / "prompts.jsonl"
    return write_jsonl(path, [{"prompt": q, "topic": "support"} for q in QUESTIONS])


@pytest.fixture(scope="module")
def topic_reward(tmp_path_factory) -> str:
    """A user reward that needs the row's `topic` field (a TypeError if it did not arrive)."""
    path = tmp_path_factory.mktemp("rewards") / "my_rewards.py"
    path.write_text("def on_topic(prompts, completions, topic, **kwargs):\n"
                    "    return [1.0 if t == 'support' else 0.0 for t in topic]\n")
    return f"{path}:on_topic"


@pytest.fixture(scope="module")
def sft_policy(tmp_path_factory) -> Path:
    """Step 1: builtin:tiny fine-tuned to answer THANKS or DOCS, about half each."""
    root = tmp_path_factory.mktemp("sft")
    data = write_jsonl(root / "sft.jsonl", [{"prompt": q, "response": a} for q in QUESTIONS for a in (THANKS, DOCS)])
    cfg = tiny_config(root, data, method={"name": "full"},
                      train={**RL_TRAIN, "max_steps": 40, "learning_rate": 3e-3, "save_steps": 1000})
    code, out = danlu("train", str(cfg))
    assert code == 0, out[-3000:]
    return root / "run" / "model"


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory, sft_policy) -> Path:
    """Step 2: a reward model (builtin:tiny with a one-output head) trained on pairs where the
    chosen answer thanks and the rejected one points to the docs; saved as stage reward saves
    its artefact (model/ with danlu.json, task seq_cls)."""
    from danlu.models.load import load_model, load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer("builtin:tiny")
    model = load_model("builtin:tiny", task="seq_cls", num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id

    def batch(answer):
        texts = [tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": answer}],
                                         tokenize=False) for q in QUESTIONS]
        return tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)

    chosen, rejected = batch(THANKS), batch(DOCS)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(30):
        margin = model(**chosen).logits[:, 0] - model(**rejected).logits[:, 0]
        loss = -torch.nn.functional.logsigmoid(margin).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (margin > 0).all()
    out = tmp_path_factory.mktemp("rm") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    meta = {"base_model": "builtin:tiny", "method": {"name": "full"}, "stage": "reward", "task": "seq_cls",
            "artefact": "model"}
    (out / "danlu.json").write_text(json.dumps(meta))
    return out


def thanks_share(target) -> float:
    """The policy's exact preference for the rewarded answer: mean over prompts of
    P(THANKS) / (P(THANKS) + P(DOCS)), each the probability of the whole answer and its end token.
    No sampling noise, so before/after compare reliably (the logged rewards come from 8 samples)."""
    from danlu.infer.load import load_for_inference

    loaded = load_for_inference(str(target), device="cpu")
    tok, shares = loaded.tokenizer, []
    for q in QUESTIONS:
        prompt = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        logps = []
        for answer in (THANKS, DOCS):
            a_ids = tok(answer, add_special_tokens=False)["input_ids"] + [loaded.stop_token_ids[0]]
            with torch.no_grad():
                logits = loaded.model(torch.tensor([p_ids + a_ids])).logits[0, len(p_ids) - 1:-1]
            logps.append(torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(a_ids)[:, None]).sum())
        shares.append(torch.sigmoid(logps[0] - logps[1]).item())
    return mean(shares)


def rl_config(tmp_path, policy, prompts, stage, options, method=None, sections=None, **train):
    return tiny_config(tmp_path, prompts, model={"name_or_path": str(policy)}, stage=stage, **{stage: options},
                       method=method or {"name": "lora", "r": 8}, train={**RL_TRAIN, **train}, **(sections or {}))


# ---- PPO ---------------------------------------------------------------------------------------
def test_ppo_with_a_reward_model_raises_the_reward(tmp_path, sft_policy, reward_model, prompts_file):
    """Step 3 (lora): 6 rollouts × 4 PPO updates. `contains:Thanks` with weight 0 is only watched.
    (At twice this learning rate one seed in four learnt to please the reward model without
    "Thanks": reward hacking; 1e-3 was stable on four seeds.)"""
    ppo = {"reward_model": str(reward_model), "reward_functions": ["contains:Thanks"], "reward_weights": [0.0, 1.0],
           "max_completion_length": 8, "num_ppo_epochs": 4}
    cfg = rl_config(tmp_path, sft_policy, prompts_file, "ppo", ppo, max_steps=24, save_steps=12)
    code, out = danlu("train", str(cfg))
    assert code == 0, out[-3000:]
    run = tmp_path / "run"
    rollouts = [r for r in metrics(run) if "reward" in r]  # one row per rollout (every 4th step)
    assert [r["step"] for r in rollouts] == [1, 5, 9, 13, 17, 21]
    score = [r["reward"] for r in rollouts]
    thanks = [r["rewards/contains:Thanks"] for r in rollouts]
    before, after = thanks_share(sft_policy), thanks_share(run)
    print(f"PPO: reward-model score per rollout {score}; share of sampled answers with Thanks {thanks}; "
          f"P(Thanks answer) {before:.3f} → {after:.3f}")
    assert mean(score[-3:]) > score[0] and mean(thanks[-3:]) > thanks[0], (score, thanks)
    assert after >= 0.9 and after > before + 0.15, (before, after)
    for row in (r for r in metrics(run) if "loss" in r):
        assert {"pg_loss", "vf_loss", "pg_clipfrac", "vf_clipfrac", "approx_kl", "entropy", "lr"} <= set(row)
    # run directory: adapter artefact (no value head in it), checkpoints with the value head
    meta = json.loads((run / "adapter" / "danlu.json").read_text())
    assert meta["stage"] == "ppo" and meta["task"] == "causal_lm"
    assert not (run / "adapter" / "value_head.safetensors").exists()
    for step in (12, 24):
        ckpt = run / "checkpoints" / f"step-{step}"
        assert (ckpt / "COMPLETE").exists() and (ckpt / "value_head.safetensors").exists()
    # resume: the value head comes back from the checkpoint (a fresh head would read exactly 0)
    code, out = danlu("train", str(cfg), "train.max_steps=28", "--resume")
    assert code == 0, out[-3000:]
    after = [r for r in metrics(run) if r["step"] > 24 and "reward" in r]
    assert [r["step"] for r in after] == [25] and after[0]["value"] != 0.0
    assert "starts again from zero" not in out
    assert json.loads((run / "run_info.json").read_text())["global_step"] == 28


def test_ppo_qlora_through_python_m_danlu(tmp_path, sft_policy, reward_model, prompts_file, topic_reward):
    ppo = {"reward_model": str(reward_model), "reward_functions": [topic_reward], "max_completion_length": 6,
           "num_ppo_epochs": 2, "kl_estimator": "k3", "missing_eos_penalty": 1.0}
    cfg = rl_config(tmp_path, sft_policy, prompts_file, "ppo", ppo, method={"name": "qlora", "r": 8},
                    sections={"data": {"eval": str(prompts_file)}, "eval": {"strategy": "steps", "steps": 4}},
                    max_steps=4, save_steps=2)

    res = run_cli("train", str(cfg), env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "run"
    rows = metrics(run)
    assert [r["step"] for r in rows if "reward" in r] == [1, 3]
    assert all(r["rewards/on_topic"] == 1.0 for r in rows if "reward" in r)  # the row's topic reached it
    assert all(r["kl"] >= 0 for r in rows if "kl" in r)  # k3 is never negative
    (evaluation,) = [r for r in rows if "eval_reward" in r]  # greedy answers to held-out prompts, scored
    assert evaluation["step"] == 4 and isinstance(evaluation["eval_reward"], float)
    meta = json.loads((run / "adapter" / "danlu.json").read_text())
    assert meta["stage"] == "ppo" and meta["method"]["quantize"] == "nf4"
    assert (run / "checkpoints" / "step-4" / "value_head.safetensors").exists()


def test_ppo_refuses_a_model_that_is_not_a_reward_model(tmp_path, prompts_file):
    ppo = {"reward_model": "builtin:tiny", "max_completion_length": 8}
    cfg = rl_config(tmp_path, "builtin:tiny", prompts_file, "ppo", ppo, max_steps=1)
    code, out = danlu("train", str(cfg))
    assert code == 2 and "ppo.reward_model" in out and "not a reward model" in out and "Traceback" not in out


# ---- GRPO and RLOO -----------------------------------------------------------------------------
def test_grpo_raises_the_reward(tmp_path, sft_policy, prompts_file):
    grpo = {"reward_functions": ["contains:Thanks"], "num_generations": 4, "max_completion_length": 8}
    cfg = rl_config(tmp_path, sft_policy, prompts_file, "grpo", grpo, max_steps=12, save_steps=6, learning_rate=2e-3)
    code, out = danlu("train", str(cfg))
    assert code == 0, out[-3000:]
    run = tmp_path / "run"
    reward = [r["reward"] for r in metrics(run) if "reward" in r]
    before, after = thanks_share(sft_policy), thanks_share(run)
    print(f"GRPO: mean reward per step {reward}; P(Thanks answer) {before:.3f} → {after:.3f}")
    assert len(reward) == 12 and mean(reward[-4:]) > mean(reward[:4]), reward
    assert after >= 0.9 and after > before + 0.15, (before, after)
    assert json.loads((run / "adapter" / "danlu.json").read_text())["stage"] == "grpo"
    assert (run / "checkpoints" / "step-12" / "COMPLETE").exists()


@pytest.mark.parametrize("stage, method", [("grpo", "qlora"), ("rloo", "lora"), ("rloo", "qlora")])
def test_rl_stage_with_method(tmp_path, sft_policy, prompts_file, topic_reward, stage, method):
    options = {"reward_functions": ["contains:Thanks", "regex:help|docs", topic_reward],
               "reward_weights": [1.0, 0.5, 0.1],
               "num_generations": 2, "max_completion_length": 8}
    cfg = rl_config(tmp_path, sft_policy, prompts_file, stage, options, method={"name": method, "r": 8},
                    max_steps=3, save_steps=3)
    code, out = danlu("train", str(cfg))
    assert code == 0, out[-3000:]
    run = tmp_path / "run"
    rows = [r for r in metrics(run) if "reward" in r]
    assert len(rows) == 3 and all("rewards/regex:help|docs/mean" in r for r in rows)
    assert all(r["rewards/on_topic/mean"] == 1.0 for r in rows)  # the row's topic reached the user function
    adapter = run / "adapter"
    assert not (adapter / "ref").exists()  # TRL's reference copy of the adapter stays out of the artefact
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.float32}  # fp32 even under qlora (TRL casts them to bf16), bf16 CPUs included
    from danlu.infer.load import load_for_inference

    loaded = load_for_inference(str(run), device="cpu")
    assert loaded.info["stage"] == stage and loaded.info["method"]["quantize"] == ("nf4" if method == "qlora" else None)


# ---- distillation --------------------------------------------------------------------------------
ITEMS = ["lamp", "door", "chair", "cup", "kite", "boat", "hat", "bike"]
COLORS = ["red", "blue", "green", "yellow"]


def color_rows(rng, per_item):
    """Each item has a favourite colour (p = .55) and three others (p = .15 each)."""
    rows = []
    for k, item in enumerate(ITEMS):
        probs = [0.15] * 4
        probs[k % 4] = 0.55
        rows += [{"prompt": f"Pick a color for the {item}.", "response": rng.choices(COLORS, probs)[0]}
                 for _ in range(per_item)]
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def kd(tmp_path_factory):
    """The teacher (builtin:tiny fine-tuned on 64 samples per item), the student's 3 per item,
    and 24 held-out samples per item."""
    root = tmp_path_factory.mktemp("kd")
    rng = random.Random(0)
    teacher_data = write_jsonl(root / "teacher.jsonl", color_rows(rng, 64))
    files = {"student": write_jsonl(root / "student.jsonl", color_rows(rng, 3)),
             "eval": write_jsonl(root / "eval.jsonl", color_rows(rng, 24))}
    cfg = tiny_config(root / "teacher", teacher_data, method={"name": "full"},
                      train={**RL_TRAIN, "max_steps": 80, "batch_size": 16, "learning_rate": 3e-3, "save_steps": 1000})
    code, out = danlu("train", str(cfg))
    assert code == 0, out[-3000:]
    return {"teacher": root / "teacher" / "run", **files}


def kd_config(tmp_path, kd, stage, options, method, model="builtin:tiny", data=None, **train):
    data = data or {"train": str(kd["student"]), "eval": str(kd["eval"])}
    return tiny_config(tmp_path, Path(data["train"]), model={"name_or_path": model}, stage=stage,
                       **{stage: options}, data=data, method=method,
                       eval={"strategy": "steps" if data.get("eval") else "no", "steps": 10, "batch_size": 16},
                       train={**RL_TRAIN, "learning_rate": 3e-3, "save_steps": 1000, **train})


def test_distillation_beats_the_same_student_without_teacher(tmp_path, kd):
    """Student builtin:tiny-llama (another architecture, same tokenizer), full, 30 steps each."""
    losses = {}
    for stage, options in (("distill", {"teacher": str(kd["teacher"]), "temperature": 2.0, "alpha": 0.5}),
                           ("sft", {})):
        cfg = kd_config(tmp_path / stage, kd, stage, options, {"name": "full"}, model="builtin:tiny-llama",
                        max_steps=30)
        code, out = danlu("train", str(cfg))
        assert code == 0, out[-3000:]
        rows = metrics(tmp_path / stage / "run")
        losses[stage] = [r["eval_loss"] for r in rows if "eval_loss" in r]
        if stage == "distill":
            kl = [r["distill_kl"] for r in rows if "distill_kl" in r]
            print("distill_kl per step:", kl)
            assert len(kl) == 30 and mean(kl[-5:]) < 0.5 * mean(kl[:5]), kl
    print("held-out loss with teacher:", losses["distill"], "without:", losses["sft"])
    assert losses["distill"][-1] < losses["sft"][-1] - 0.05, losses


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_distill_with_method(tmp_path, kd, method):
    cfg = kd_config(tmp_path, kd, "distill", {"teacher": str(kd["teacher"]), "alpha": 0.9},
                    {"name": method, "r": 8}, max_steps=6, learning_rate=1e-2)
    code, out = danlu("train", str(cfg))
    assert code == 0, out[-3000:]
    run = tmp_path / "run"
    kl = [r["distill_kl"] for r in metrics(run) if "distill_kl" in r]
    assert len(kl) == 6 and kl[-1] < kl[0], kl
    meta = json.loads((run / "adapter" / "danlu.json").read_text())
    assert meta["stage"] == "distill" and meta["method"]["quantize"] == ("nf4" if method == "qlora" else None)


def test_sequence_level_distillation(tmp_path, kd):
    """The teacher answers each prompt (greedy: the colour it finds likeliest, mostly the item's
    favourite); the student is fine-tuned on those answers."""
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Pick a color for the {i}."} for i in ITEMS])
    cfg = kd_config(tmp_path, kd, "distill", {"teacher": str(kd["teacher"]), "mode": "sequence",
                                              "max_completion_length": 8},
                    {"name": "lora", "r": 8}, data={"train": str(prompts)}, max_steps=8, learning_rate=1e-2,
                    batch_size=4)
    code, out = danlu("train", str(cfg))
    assert code == 0, out[-3000:]
    run = tmp_path / "run"
    written = [json.loads(line) for line in (run / "distill_data.jsonl").read_text().splitlines()]
    answers = {row["messages"][0]["content"]: row["messages"][-1]["content"] for row in written}
    favourite = {f"Pick a color for the {item}.": COLORS[k % 4] for k, item in enumerate(ITEMS)}
    assert set(answers) == set(favourite) and set(answers.values()) <= set(COLORS), answers
    assert sum(answers[p] == favourite[p] for p in answers) >= 6, answers  # the teacher knows most favourites
    losses = [r["loss"] for r in metrics(run) if "loss" in r]
    print("sequence-level distillation: teacher's answers", answers, "student loss per step", losses)
    assert losses[-1] < losses[0] * 0.7, losses


def test_logit_distillation_refuses_another_vocabulary(tmp_path, kd):
    cfg = kd_config(tmp_path, kd, "distill", {"teacher": "builtin:tiny-bert"}, {"name": "lora"}, max_steps=1)
    code, out = danlu("train", str(cfg))
    assert code == 2 and "distill.teacher" in out and "vocabulary" in out and "distill.mode: sequence" in out
    assert "Traceback" not in out
