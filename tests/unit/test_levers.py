"""GPU levers decided on CPU: attention resolution, Liger arguments and refusals, activation
offload mapping, and what a run records about them."""

from __future__ import annotations

import pytest

from danlu.errors import ConfigError
from danlu.train import levers


def _cfg(stage="sft", model=None, **train):
    from danlu.config.schema import RunConfig

    return RunConfig.model_validate({"model": {"name_or_path": "builtin:tiny", **(model or {})},
                                     "data": {"train": "x.jsonl"}, "method": {"name": "lora"}, "stage": stage,
                                     "train": train})


@pytest.fixture
def gpu_with_liger(monkeypatch):
    monkeypatch.setattr(levers, "cuda_available", lambda: True)
    monkeypatch.setattr(levers, "liger_installed", lambda: True)


def test_schema_defaults():
    t = _cfg().train
    assert t.liger_kernel == "auto" and t.offload_activations is False
    assert _cfg(liger_kernel=True).train.liger_kernel is True
    with pytest.raises(Exception):
        _cfg(liger_kernel="always")


def test_auto_attention_is_transformers_default_without_flash_attn():
    assert levers.resolve_attention("auto", "bf16") == "auto"  # no CUDA here: sdpa
    assert levers.resolve_attention("eager", "bf16") == "eager"


def test_auto_attention_of_a_packed_cpu_run_is_danlu_varlen_sdpa(monkeypatch):
    from transformers import AttentionInterface

    assert levers.resolve_attention("auto", "bf16", packing=True) == "danlu_varlen_sdpa"
    assert "danlu_varlen_sdpa" in AttentionInterface()  # registered, so from_pretrained accepts the name
    assert levers.resolve_attention("auto", "fp32", packing=True) == "danlu_varlen_sdpa"
    assert levers.resolve_attention("sdpa", "bf16", packing=True) == "sdpa"  # an explicit choice stays
    monkeypatch.setattr(levers, "cuda_available", lambda: True)
    monkeypatch.setattr(levers, "flash_attn_installed", lambda: False)
    assert levers.resolve_attention("auto", "bf16", packing=True) == "auto"  # CUDA without flash-attn: sdpa


def test_auto_attention_picks_flash_only_for_half_precision_on_cuda(monkeypatch):
    monkeypatch.setattr(levers, "cuda_available", lambda: True)
    monkeypatch.setattr(levers, "flash_attn_installed", lambda: True)
    assert levers.resolve_attention("auto", "bf16") == "flash_attention_2"
    assert levers.resolve_attention("auto", "fp32") == "auto"  # flash-attention computes in 16 bits only


def test_liger_auto_is_off_without_cuda():
    assert levers.liger_enabled(_cfg()) is False
    assert levers.liger_arguments(_cfg()) == {}


def test_liger_auto_maps_to_transformers_switch_with_danlu_loss(gpu_with_liger):
    kw = levers.liger_arguments(_cfg())
    assert kw["use_liger_kernel"] is True
    cfg = kw["liger_kernel_config"]
    assert cfg["rms_norm"] and cfg["rope"] and cfg["swiglu"]
    assert cfg["fused_linear_cross_entropy"] is False and cfg["cross_entropy"] is False  # danlu's chunked loss stays
    assert levers.liger_enabled(_cfg(liger_kernel=False)) is False


def test_liger_auto_stays_off_for_trl_stages(gpu_with_liger):
    assert levers.liger_enabled(_cfg(stage="dpo")) is False


def test_training_arguments_accept_the_liger_entries(gpu_with_liger):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir="/tmp/x", use_cpu=True, report_to="none", **levers.liger_arguments(_cfg()))
    assert args.use_liger_kernel is True and args.liger_kernel_config["fused_linear_cross_entropy"] is False


def test_liger_true_without_cuda_is_refused():
    with pytest.raises(ConfigError) as err:
        levers.check(_cfg(liger_kernel=True))
    assert err.value.where == "train.liger_kernel" and "CUDA" in str(err.value) and err.value.exit_code == 2


def test_liger_true_without_the_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(levers, "cuda_available", lambda: True)
    monkeypatch.setattr(levers, "liger_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"danlu\[gpu\]"):
        levers.check(_cfg(liger_kernel=True))


def test_liger_true_on_a_trl_stage_is_refused(gpu_with_liger):
    with pytest.raises(ConfigError, match="TRL"):
        levers.check(_cfg(stage="dpo", liger_kernel=True))
    levers.check(_cfg(liger_kernel=True))  # sft: fine


def test_flash_attention_requested_without_cuda_is_refused():
    with pytest.raises(ConfigError) as err:
        levers.check(_cfg(model={"attn_implementation": "flash_attention_2"}))
    assert err.value.where == "model.attn_implementation" and "flash-attn" in str(err.value)


def test_offload_with_checkpointing_uses_transformers_offloaded_checkpointing(monkeypatch):
    assert levers.checkpointing_kwargs(_cfg()) is None
    cfg = _cfg(gradient_checkpointing=True, offload_activations=True)
    assert levers.checkpointing_kwargs(cfg) == {"use_reentrant": False}  # CPU: nothing to offload
    monkeypatch.setattr(levers, "cuda_available", lambda: True)
    assert levers.checkpointing_kwargs(cfg) == {"use_reentrant": False, "offload": True}
    assert levers.offload_forward(cfg) is False  # the checkpoints do it


def test_offload_without_checkpointing_wraps_the_forward(monkeypatch):
    import torch

    cfg = _cfg(offload_activations=True)
    assert levers.offload_forward(cfg) is False  # CPU: a no-op
    monkeypatch.setattr(levers, "cuda_available", lambda: True)
    assert levers.offload_forward(cfg) is True
    assert isinstance(levers.forward_offload_context(cfg), torch.autograd.graph.save_on_cpu)


def test_offload_with_fsdp_checkpointing_is_refused():
    with pytest.raises(ConfigError) as err:
        levers.check(_cfg(distributed="fsdp", gradient_checkpointing=True, offload_activations=True))
    assert err.value.where == "train.offload_activations"


def test_describe_records_what_the_run_uses():
    from types import SimpleNamespace

    model = SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa"))
    info = levers.describe(_cfg(offload_activations=True), model, packing="4D block-diagonal mask")
    assert info == {"attn_implementation": "sdpa", "packing": "4D block-diagonal mask", "liger_kernel": False,
                    "gradient_checkpointing": False, "offload_activations": "no-op on CPU"}


def test_auto_flash_falls_back_to_sdpa_for_a_model_without_it(monkeypatch):
    """An architecture transformers cannot run with flash-attention still loads under auto."""
    from danlu.models import load as model_load
    from danlu.train import runner

    calls = []

    def fake_load(name, *, attn_implementation="auto", **kw):
        calls.append(attn_implementation)
        if attn_implementation == "flash_attention_2":
            raise ValueError("BertModel does not support Flash Attention 2.0 yet.")
        return "model"

    monkeypatch.setattr(levers, "resolve_attention", lambda requested, precision, **kw: "flash_attention_2")
    monkeypatch.setattr(model_load, "load_model", fake_load)
    ctx = type("Ctx", (), {"config": _cfg(), "precision": "bf16"})()
    assert runner.load_base(ctx) == "model" and calls == ["flash_attention_2", "auto"]
    ctx.config = _cfg(model={"attn_implementation": "eager"})
    monkeypatch.setattr(levers, "resolve_attention", lambda requested, precision, **kw: requested)
    monkeypatch.setattr(model_load, "load_model", lambda *a, **k: (_ for _ in ()).throw(ValueError("flash broke")))
    with pytest.raises(ValueError):  # an explicit choice is never silently replaced
        runner.load_base(ctx)
