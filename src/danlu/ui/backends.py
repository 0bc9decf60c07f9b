"""Which danlu commands this installation has. A page whose command is missing shows a disabled
button and says which command it is waiting for — it never pretends to work."""

from __future__ import annotations

import importlib.util

# feature → (module that provides it, the command a person would run)
BACKENDS = {
    "eval": ("danlu.cli.eval", "danlu eval"),
    "plan": ("danlu.cli.plan", "danlu plan"),
    "export": ("danlu.cli.export", "danlu export"),
    "serve": ("danlu.cli.serve", "danlu serve"),
    "clean": ("danlu.workbench.clean", "danlu data clean"),
    "dedup": ("danlu.workbench.dedup", "danlu data dedup"),
    "scrub": ("danlu.workbench.pii", "danlu data scrub"),
    "split": ("danlu.workbench.split", "danlu data split"),
    "inspect": ("danlu.workbench.inspect_rows", "danlu data inspect"),
}


def available(feature: str) -> bool:
    module = BACKENDS[feature][0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def command(feature: str) -> str:
    return BACKENDS[feature][1]


def missing() -> list[str]:
    return [f for f in BACKENDS if not available(f)]
