"""The rows of `danlu methods`: class facts, plus trainable parameters when a model is given."""

from __future__ import annotations


def methods_table(model: str | None = None) -> list[dict]:
    from danlu.methods.base import MethodContext, count_parameters
    from danlu.methods.registry import METHODS

    rows = []
    for name, cls in METHODS:
        row = {"method": name, "aliases": METHODS.aliases_of(name), "trains": cls.trains,
               "can_merge": cls.can_merge, "inference_cost": cls.inference_cost, "memory_class": cls.memory_class}
        if model:
            try:
                m = _fresh(model)
                method = cls(name=name)
                m = method.apply(m, MethodContext())
                trainable, total = count_parameters(m)
                row.update(trainable_params=trainable, total_params=total,
                           trainable_percent=100.0 * trainable / max(total, 1))
            except Exception as exc:  # noqa: BLE001 — a method that does not fit this model says why
                row["error"] = str(exc).splitlines()[0][:60]
        rows.append(row)
    return rows


def _fresh(model: str):
    from danlu.models.load import load_model

    return load_model(model)
