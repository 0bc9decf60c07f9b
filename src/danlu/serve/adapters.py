"""The models one server offers: a base model and any number of LoRA adapters trained on it,
each with its own tokenizer (chat template) and stop tokens, each named in /v1/models.

`open_target` turns `danlu serve TARGET` into the base model and its first adapter;
`prepare_adapter` validates an adapter folder (a danlu artefact or a plain PEFT LoRA folder:
safetensors only, LoRA only, trained on this base) before anything touches the model;
`attach` / `detach` change the PEFT model on the engine's thread."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from danlu.errors import UserError
from danlu.models.chain import canonical

log = logging.getLogger(__name__)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
MAX_ADAPTERS = 64


@dataclass
class ModelEntry:
    id: str
    kind: str  # base | adapter
    path: str
    tokenizer: object
    stop_token_ids: list[int]
    info: dict = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))
    dora: bool = False  # PEFT cannot mix DoRA adapters with others in one batch
    processor: object = None  # a vision-language model's AutoProcessor (renders prompts with images)

    def card(self, base_id: str) -> dict:
        card = {"id": self.id, "object": "model", "created": self.created, "owned_by": "danlu"}
        if self.kind == "adapter":
            card.update(parent=base_id, root=base_id)
        return card


def run_name(artefact: Path) -> str:
    """The name an artefact is served under: its run directory's name."""
    return artefact.parent.name if artefact.name in ("adapter", "model") else artefact.name


def served_model_name(target: str, path: str | Path | None = None) -> str:
    """The name `danlu serve TARGET` gives its model in /v1/models (what clients put in "model"):
    a run's directory name for a run or artefact, TARGET itself for a plain model. `path` is where
    TARGET is when it is given relative to another folder."""
    from danlu.infer.load import find_artefact

    artefact = find_artefact(str(path if path is not None else target))
    return run_name(artefact) if artefact is not None else target


@dataclass
class Target:
    base_path: str  # what load_model() loads
    base: ModelEntry
    adapters: list[tuple[str, str]]  # (name, path) to attach at start


def open_target(target: str) -> Target:
    """`danlu serve TARGET`: a plain model, a run / artefact with an adapter, or a full model artefact."""
    from danlu.infer.load import find_artefact, refuse_pickles

    artefact = find_artefact(target)
    if artefact is None:
        return Target(target, _plain_entry(target, target), [])
    info = json.loads((artefact / "danlu.json").read_text(encoding="utf-8"))
    if info.get("task", "causal_lm") != "causal_lm":
        raise UserError(f"{artefact} is a {info['task']} model; danlu serve serves causal language models")
    refuse_pickles(artefact)
    if info.get("artefact") == "model":
        entry = _artefact_entry(run_name(artefact), "base", artefact, info, None)
        return Target(str(artefact), entry, [])
    base = info["base_model"]
    refuse_stacked(artefact, info)
    from danlu.models.chain import describe

    if describe(info):
        log.info("adapter chain: %s → %s", base, describe(info))
    return Target(base, _plain_entry(base, base), [(run_name(artefact), str(artefact))])


def refuse_stacked(folder: Path, info: dict) -> None:
    """An adapter trained on top of merged earlier adapters (adapter_mode: stack) needs that
    merged base, which a server shared by several adapters does not have."""
    if info.get("stacked"):
        raise UserError(f"{folder} was trained on top of {len(info['stacked'])} earlier adapter(s) merged into "
                        "the base (model.adapter_mode: stack); it cannot share the plain base",
                        where="path", hint=f"merge the chain and serve that: danlu export {folder} --merge -o DIR; "
                                           "danlu serve DIR")


def _plain_entry(name: str, path: str) -> ModelEntry:
    from danlu.chat.templates import resolve_template
    from danlu.models.load import load_tokenizer

    tok = load_tokenizer(path)
    tpl = resolve_template(tok, "auto")
    return ModelEntry(name, "base", path, tok, tpl.stop_token_ids())


def _artefact_entry(name: str, kind: str, folder: Path, info: dict, fallback) -> ModelEntry:
    from danlu.models.load import load_tokenizer

    has_tokenizer = (folder / "tokenizer_config.json").is_file()
    tok = load_tokenizer(str(folder)) if has_tokenizer else fallback.tokenizer
    stop = info.get("stop_token_ids") or (fallback.stop_token_ids if fallback else [tok.eos_token_id])
    return ModelEntry(name, kind, str(folder), tok, [int(i) for i in stop], info)


def prepare_adapter(name: str, path: str, base: ModelEntry, existing: dict[str, ModelEntry]) -> ModelEntry:
    """Validate an adapter before it is loaded; every problem is a UserError (HTTP 400)."""
    from danlu.infer.load import find_artefact, refuse_pickles

    if not NAME.match(name or "") or name == "__base__":
        raise UserError(f"adapter name {name!r} is not allowed", where="name",
                        hint="1-64 characters: letters, digits and . _ : @ - (starting with a letter or digit)")
    if name in existing or name == base.id:
        raise UserError(f"a model named {name!r} is already served", where="name",
                        hint="remove it first (DELETE /v1/adapters/NAME) or choose another name")
    if len(existing) >= MAX_ADAPTERS:
        raise UserError(f"this server already holds {MAX_ADAPTERS} adapters", hint="remove one first")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"adapter folder {path!r} does not exist on the server", where="path")
    folder = find_artefact(str(folder)) or folder
    if not (folder / "adapter_config.json").is_file():
        raise UserError(f"{folder} is not a LoRA adapter folder (no adapter_config.json)", where="path",
                        hint="give a run directory, its adapter/ folder, or a PEFT LoRA folder")
    refuse_pickles(folder)
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        raise UserError(f"{folder} holds a {config.get('peft_type')} adapter; only LoRA adapters share one base",
                        where="path", hint=f"merge it (danlu export {folder} --merge -o DIR) and serve DIR")
    info = _adapter_info(folder, config)
    refuse_stacked(folder, info)
    trained_on = info.get("base_model") or config.get("base_model_name_or_path") or ""
    if canonical(trained_on) != canonical(base.path) and canonical(trained_on) != canonical(base.id):
        raise UserError(f"adapter {name!r} was trained on {trained_on!r}, but this server's base is {base.id!r}",
                        where="path", hint="serve it on its own base: danlu serve " + str(folder))
    entry = _artefact_entry(name, "adapter", folder, info, base)
    entry.dora = bool(config.get("use_dora"))
    return entry


def _adapter_info(folder: Path, config: dict) -> dict:
    meta = folder / "danlu.json"
    if not meta.is_file():
        return {}
    info = json.loads(meta.read_text(encoding="utf-8"))
    if info.get("artefact", "adapter") != "adapter":
        raise UserError(f"{folder} is a full model, not an adapter", where="path",
                        hint=f"serve it as the base: danlu serve {folder}")
    return info


def attach(model, entry: ModelEntry):
    """Load the adapter's weights into the PEFT model (wrapping a plain model on first use)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model.load_adapter(entry.path, adapter_name=entry.id, is_trainable=False)
    else:
        model = PeftModel.from_pretrained(model, entry.path, adapter_name=entry.id, is_trainable=False)
    return model.eval()


def detach(model, name: str):
    """Remove an adapter's weights; the last one gone, the plain base model is returned."""
    if len(model.peft_config) == 1:
        return model.unload().eval()
    model.delete_adapter(name)
    return model
