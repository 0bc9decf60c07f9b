"""Classification: metrics against hand-computed values (and scikit-learn when installed), the label
set read from the data, sequence and token heads on an encoder and a decoder with full and LoRA,
the labels saved with the model and the trained head reloaded with identical logits."""

from __future__ import annotations

import random

import pytest
import torch

from danlu.stages._classify_data import IGNORE, accuracy_and_f1, label_set
from tests.conftest import one_torch_thread, write_jsonl

KEYWORDS = {"red": "colour", "blue": "colour", "green": "colour", "one": "number", "two": "number", "three": "number"}
FILLER = ["apple", "river", "window", "music", "garden", "paper", "train", "cloud", "stone", "bread"]


one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def test_accuracy_and_macro_f1_by_hand():
    # per class (tp, fp, fn): 0 → (2,1,0) F1 0.8; 1 → (1,1,1) F1 0.5; 2 → (0,0,1) F1 0
    preds = [0, 0, 1, 0, 1, 9]
    labels = [0, 0, 1, 1, 2, IGNORE]  # the last one is not a labelled position
    got = accuracy_and_f1(preds, labels)
    assert got["accuracy"] == round(3 / 5, 4)
    assert got["macro_f1"] == round((0.8 + 0.5 + 0) / 3, 4)
    sklearn = pytest.importorskip("sklearn.metrics")
    assert got["macro_f1"] == round(sklearn.f1_score(labels[:5], preds[:5], average="macro"), 4)


class _S:
    def __init__(self, label):
        self.label = label


@pytest.mark.parametrize("labels, given, expected", [
    (["b", "a", "b"], None, ["a", "b"]),
    ([2, 0, 10], None, ["0", "2", "10"]),  # integer ids sort numerically
    (["x", "y"], ["y", "x", "z"], ["y", "x", "z"]),  # given: that order, even labels not in the data
])
def test_label_set(labels, given, expected):
    assert label_set([_S(x) for x in labels], given) == expected


def sequence_rows(n, seed, ids=False):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        key = rng.choice(list(KEYWORDS))
        label = KEYWORDS[key]
        rows.append({"text": " ".join(rng.sample(FILLER, 2) + [key]),
                     "label": ["colour", "number"].index(label) if ids else label})
    return rows


def token_rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(FILLER, 3)
        words.insert(rng.randrange(4), rng.choice(list(KEYWORDS)))
        rows.append({"tokens": words, "tags": [KEYWORDS.get(w, "O") for w in words]})
    return rows


def run(tmp_path, model, method, classify, rows, steps=20, lr=1e-2):
    from danlu.config.load import load_config_dict
    from danlu.train.runner import run_training

    data = write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = load_config_dict({
        "model": {"name_or_path": model}, "data": {"train": str(data), "eval_split": 0.25},
        "method": method, "stage": "classify", "classify": classify,
        "train": {"max_steps": steps, "batch_size": 8, "learning_rate": lr, "logging_steps": 10, "max_length": 32,
                  "report_to": [], "save_steps": 1000, "warmup_ratio": 0.0},
        "eval": {"strategy": "no"}, "output_dir": str(tmp_path / "run"),
    })
    return run_training(cfg)


CASES = [
    ("builtin:tiny", {"name": "lora", "r": 8}, {}, "sequence"),
    ("builtin:tiny", {"name": "full"}, {}, "ids"),
    ("builtin:tiny-bert", {"name": "lora", "r": 8}, {"level": "token"}, "token"),
]


@pytest.mark.parametrize("model, method, classify, rows", CASES, ids=["decoder-lora", "decoder-full-ids", "bert-lora-token"])
def test_classify_trains_saves_labels_and_reloads(tmp_path, model, method, classify, rows):
    from danlu.infer.load import load_for_inference

    data = {"sequence": lambda: sequence_rows(96, 1), "ids": lambda: sequence_rows(96, 1, ids=True),
            "token": lambda: token_rows(96, 1)}[rows]()
    result = run(tmp_path, model, method, classify, data, lr=1e-2 if method["name"] == "lora" else 2e-3)
    info = result.info
    assert info["eval_samples"] == 24 and 0 <= info["majority_baseline_accuracy"] <= 1
    assert info["eval_accuracy"] > info["majority_baseline_accuracy"], info  # it learned something
    loaded = load_for_inference(str(result.run_dir), device="cpu")
    expected = {"sequence": ["colour", "number"], "ids": ["0", "1"], "token": ["O", "colour", "number"]}[rows]
    assert [loaded.model.config.id2label[i] for i in range(len(expected))] == expected
    assert loaded.info["labels"] == expected and loaded.info["task"] == ("token_cls" if rows == "token" else "seq_cls")
    enc = loaded.tokenizer("red apple river", return_tensors="pt")
    with torch.no_grad():
        a = loaded.model(**enc).logits
        b = load_for_inference(str(result.artefact), device="cpu").model(**enc).logits
    assert torch.equal(a, b)  # the trained head reloads from the artefact alone (adapter: from danlu.json)
