"""A method's and a stage's memory facts live in their own class: a method registered in one
place is planned by `danlu plan` and checked by `danlu train`'s memory check, and a class that
declares no memory shape is refused when it registers."""

from __future__ import annotations

from typing import Literal

import pytest

from danlu.config.schema import get_run_config_class
from danlu.methods import METHODS, Method, register_method
from danlu.methods.shape import MethodShape
from danlu.plan.arch import resolve_arch
from danlu.plan.estimate import estimate_memory
from danlu.plan.hardware import Device


class Throwaway(Method):
    """Trains one d-vector per block (a stand-in for a new method)."""

    name: Literal["throwaway"] = "throwaway"

    def memory_shape(self, arch) -> MethodShape:
        return MethodShape("throwaway", arch.layers * arch.hidden, largest_trainable=arch.hidden)


@pytest.fixture
def throwaway():
    register_method("throwaway")(Throwaway)
    get_run_config_class.cache_clear()  # RunConfig's method union is built from the registry
    yield Throwaway
    METHODS.unregister("throwaway")
    get_run_config_class.cache_clear()


def test_a_method_registered_in_a_test_is_planned(throwaway, monkeypatch):
    from danlu.plan import hardware, preflight
    from danlu.plan.inputs import build_config, spec_for

    cfg = build_config(None, [], {"model": "Qwen/Qwen2.5-7B", "method": "throwaway", "max_length": 512})
    assert isinstance(cfg.method, Throwaway)
    gpu = Device("rtx4090", "cuda", 24 * 1024**3, 165.0, 82.0, "RTX 4090")
    spec = spec_for(cfg, gpu, gpus=1, strategy="ddp", offload="none")
    arch = resolve_arch("Qwen/Qwen2.5-7B")
    assert spec.shape.trainable == 28 * 3584
    est = estimate_memory(spec)
    assert est.term("trainable") == 28 * 3584 * 4  # fp32 trained vectors
    assert est.term("weights") == arch.n_params * 2  # the frozen base in bf16
    monkeypatch.setattr(hardware, "this_machine", lambda: gpu)
    checked = preflight.check_memory(cfg)  # `danlu train`'s check plans the same run
    assert checked is not None and checked.peak_bytes == est.peak_bytes


def test_a_method_without_a_memory_shape_is_refused_at_registration():
    class Shapeless(Method):
        name: Literal["shapeless"] = "shapeless"

    with pytest.raises(TypeError, match="memory_shape"):
        register_method("shapeless")(Shapeless)
    assert "shapeless" not in METHODS


def test_every_registered_method_and_stage_declares_its_shape():
    from danlu.methods.shape import MethodShape
    from danlu.plan.methods import method_options
    from danlu.stages import STAGES
    from danlu.stages.shape import PlannedRun, StageShape

    arch = resolve_arch("builtin:small")
    for name, cls in METHODS:
        assert isinstance(method_options(name, {}).memory_shape(arch), MethodShape), name
    run = PlannedRun(arch, METHODS.get("lora")().memory_shape(arch), resolve_arch)
    for name, cls in STAGES:
        assert isinstance(cls().memory_shape(run), StageShape), name


def test_lora_shorthands_are_the_method_s_own_aliases():
    """The planner has no alias list of its own: qlora is LoRA with a 4-bit base."""
    from danlu.plan.methods import method_shape

    arch = resolve_arch("Qwen/Qwen2.5-7B")
    assert method_shape(arch, "qlora", {"r": 16}).quant_bits == 4
    assert method_shape(arch, "dora", {"r": 16}).adapters["q_proj"].dora
