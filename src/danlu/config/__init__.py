"""Typed run configuration: one YAML file → RunConfig (schema.py), with dotted overrides (load.py)."""


def __getattr__(name):
    if name == "RunConfig":
        from danlu.config.schema import get_run_config_class

        return get_run_config_class()
    if name in ("load_config", "load_config_dict"):
        from danlu.config import load

        return getattr(load, name)
    raise AttributeError(name)


__all__ = ["RunConfig", "load_config", "load_config_dict"]
