"""Model shapes: parameter counts equal transformers' own (meta device, no weights) for every
family, the bundled table matches published sizes, and names resolve the way users type them."""

from __future__ import annotations

import json

import pytest

from danlu.errors import UserError
from danlu.plan.arch import _normalise, arch_from_config, bundled_names, bundled_table, resolve_arch

# published parameter counts (model cards / papers), exact where the card gives the number
PUBLISHED = {
    "Qwen/Qwen2.5-0.5B": 0.494e9, "Qwen/Qwen2.5-1.5B": 1.54e9, "Qwen/Qwen2.5-3B": 3.09e9,
    "Qwen/Qwen2.5-7B": 7.61e9, "Qwen/Qwen2.5-14B": 14.7e9, "Qwen/Qwen2.5-32B": 32.8e9, "Qwen/Qwen2.5-72B": 72.7e9,
    "Qwen/Qwen3-0.6B": 0.6e9, "Qwen/Qwen3-8B": 8.2e9, "Qwen/Qwen3-32B": 32.8e9,
    "meta-llama/Llama-3.2-1B": 1.24e9, "meta-llama/Llama-3.2-3B": 3.21e9, "meta-llama/Llama-3.1-8B": 8.03e9,
    "meta-llama/Llama-3.1-70B": 70.6e9, "meta-llama/Llama-2-7b-hf": 6.74e9, "mistralai/Mistral-7B-v0.3": 7.25e9,
    "google/gemma-2-9b": 9.24e9, "google/gemma-3-1b": 999_885_952, "THUDM/glm-4-9b-chat-hf": 9.4e9,
    "microsoft/Phi-3-mini-4k-instruct": 3.82e9, "microsoft/phi-4": 14.7e9, "microsoft/phi-2": 2.78e9,
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": 1.78e9, "google-bert/bert-base-uncased": 109_482_240,
    "sentence-transformers/all-MiniLM-L6-v2": 22_713_216, "google-bert/bert-large-uncased": 335_141_888,
    # issue 18's packaged real models: the tensors of their dequantised GGUF checkpoints, counted
    "HuggingFaceTB/SmolLM2-135M-Instruct": 134_515_008, "google/gemma-3-270m": 268_098_176,
}
# the smallest entry of each family, instantiated by transformers on the meta device
ONE_PER_FAMILY = ["Qwen/Qwen2.5-0.5B", "Qwen/Qwen3-0.6B", "meta-llama/Llama-3.2-1B", "mistralai/Mistral-7B-v0.3",
                  "google/gemma-2b", "google/gemma-2-2b", "google/gemma-3-1b", "THUDM/glm-4-9b-chat-hf",
                  "THUDM/GLM-4-9B-0414", "microsoft/Phi-3-mini-4k-instruct", "microsoft/phi-2",
                  "sentence-transformers/all-MiniLM-L6-v2"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_bundled_table_matches_published_sizes(name):
    n, published = resolve_arch(name).n_params, PUBLISHED[name]
    if isinstance(published, int):  # the card gives the exact count
        assert n == published
    else:  # rounded to the digits the card shows
        assert abs(n - published) / published < 0.01, (name, n)


def _fields(name):
    entry = bundled_table()[_normalise(name)]
    return {k: v for k, v in entry.items() if not k.startswith("_") and k != "aliases"}


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_counts_equal_transformers_on_meta_device(name):
    import torch
    from transformers import CONFIG_MAPPING, AutoModel, AutoModelForCausalLM

    fields = _fields(name)
    arch = arch_from_config(fields, name=name)
    hf_config = CONFIG_MAPPING[fields["model_type"]](**{k: v for k, v in fields.items() if k != "model_type"})
    with torch.device("meta"):
        model = (AutoModel if arch.is_encoder else AutoModelForCausalLM).from_config(hf_config)
    assert arch.n_params == sum(p.numel() for p in model.parameters())
    linear = sum(m.weight.numel() for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and (".layers." in n or ".layer." in n))
    assert arch.linear_params == linear  # what 4-bit quantisation packs


@pytest.mark.parametrize("builtin", ["builtin:tiny", "builtin:tiny-llama", "builtin:tiny-bert"])
def test_builtin_models_counted_exactly(builtin):
    from danlu.models.load import load_model

    arch = resolve_arch(builtin)
    model = load_model(builtin, task="base" if arch.is_encoder else "causal_lm")
    assert arch.n_params == sum(p.numel() for p in model.parameters())
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias"))
    assert arch.bias_params() == biases


@pytest.mark.parametrize("typed", ["Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b", "Qwen/Qwen2.5-7B", "QWEN/QWEN2.5-7B-INSTRUCT"])
def test_names_resolve_as_users_type_them(typed):
    arch = resolve_arch(typed)
    assert (arch.hidden, arch.layers, arch.vocab) == (3584, 28, 152064)
    assert "bundled table" in arch.source


def test_aliases_share_a_shape():
    from dataclasses import replace

    a, b = resolve_arch("deepseek-ai/DeepSeek-R1-Distill-Llama-8B"), resolve_arch("meta-llama/Llama-3.1-8B-Instruct")
    assert replace(a, name="", source="") == replace(b, name="", source="")
    assert len(bundled_names()) >= 40


def test_local_directory_wins_and_defaults_follow_the_family(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
           "num_attention_heads": 4, "vocab_size": 100}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    arch = resolve_arch(str(tmp_path))
    assert arch.kv_heads == 4 and arch.head_dim == 16 and arch.tie_embeddings is False
    assert arch.source.endswith("config.json")


def test_unknown_model_and_moe_are_explained(tmp_path):
    with pytest.raises(UserError, match="danlu plan --list-models"):
        resolve_arch("someone/never-heard-of-it-7b")
    moe = {"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
           "num_attention_heads": 4, "vocab_size": 100, "num_experts": 8}
    with pytest.raises(UserError, match="mixture-of-experts"):
        arch_from_config(moe)
    with pytest.raises(UserError, match="model_type 'mamba'"):
        arch_from_config({"model_type": "mamba"})
