"""The consistency check every export runs: the chat template and end-of-turn token (EOS) the
run trained with are the ones the exported artefact carries.

A model that "never stops talking" after export is almost always this bug: the template or the
stop token was lost or replaced on the way (tokenizer files edited, a generation config without
the turn-end token, a GGUF whose EOS is the base model's <|endoftext|> instead of <|im_end|>).

`trained_chat` reads what the run trained with from the artefact (danlu.json, the tokenizer's
template, generation_config.json, the run's config.yaml) and checks that these agree;
`check_hf_dir`, `check_gguf` and `check_modelfile` check an export against it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from danlu.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class TrainedChat:
    """What the run trained with. `template` is None for runs without a chat template
    (pretraining on plain text, classification): then only the EOS ids are checked."""

    template: str | None
    turn_end: str
    stop_token_ids: list[int]
    source: str = ""  # "tokenizer", a built-in template name, or a file path
    problems: list[str] = field(default_factory=list)

    @property
    def turn_end_id(self) -> int:
        return self.stop_token_ids[0]


def _mismatch(what: str, where: Path, hint: str) -> UserError:
    return UserError(f"chat template / EOS mismatch: {what}", where=str(where), hint=hint)


RESTORE_HINT = ("the tokenizer files of the artefact were changed after training; restore chat_template.jinja and "
                "tokenizer_config.json from the run's last checkpoint (RUN/checkpoints/step-N/), then export again")


def trained_chat(artefact: Path, tokenizer, info: dict) -> TrainedChat:
    """Read and cross-check what the run trained with; a disagreement is a UserError."""
    from danlu.chat.templates import resolve_template

    artefact = Path(artefact)
    if not info.get("turn_end"):
        eos = info.get("stop_token_ids") or [tokenizer.eos_token_id]
        return TrainedChat(None, tokenizer.eos_token or "", [int(i) for i in eos if i is not None])
    text = getattr(tokenizer, "chat_template", None)
    if not text:
        raise _mismatch("the run trained with a chat template but the artefact's tokenizer has none",
                        artefact, RESTORE_HINT)
    source = info.get("template", "tokenizer")
    _check_named_template(artefact, source, text)
    _check_run_config(artefact, source)
    found = resolve_template(tokenizer, "auto")  # works out the turn end from the template itself
    if found.turn_end != info["turn_end"]:
        raise _mismatch(f"the artefact's chat template ends assistant turns with {found.turn_end!r}, but the run "
                        f"trained with {info['turn_end']!r} (danlu.json turn_end)", artefact, RESTORE_HINT)
    stop = [int(i) for i in info.get("stop_token_ids") or found.stop_token_ids()]
    if stop[0] != found.turn_end_id:
        raise _mismatch(f"danlu.json stop_token_ids {stop} do not start with the turn-end token "
                        f"{info['turn_end']!r} (id {found.turn_end_id}) in this tokenizer", artefact,
                        "the tokenizer's vocabulary differs from the one the run trained with; restore it from "
                        "the run's last checkpoint")
    _check_generation_config(artefact / "generation_config.json", stop)
    return TrainedChat(text, info["turn_end"], stop, source)


def _check_named_template(artefact: Path, source: str, text: str) -> None:
    from danlu.chat.templates import NAMED, TEMPLATE_DIR

    if source in NAMED:
        expected = (TEMPLATE_DIR / f"{NAMED[source]}.jinja").read_text(encoding="utf-8")
        if expected != text:
            raise _mismatch(f"the run trained with danlu's {source!r} template, but the artefact's tokenizer "
                            "carries a different one", artefact, RESTORE_HINT)


def _check_run_config(artefact: Path, source: str) -> None:
    """If the artefact sits in a run directory, its config.yaml names the template it trained with."""
    import yaml

    cfg = artefact.parent / "config.yaml"
    if not cfg.is_file():
        return
    try:
        data = yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return
    chosen = str((data.get("data") or {}).get("template", "auto"))
    # auto = the tokenizer's own template; for a tokenizer without one, the family its special
    # tokens name (gemma ...) or danlu's "default"
    from danlu.chat.templates import FAMILY_BY_TOKENS

    if source != chosen and not (chosen == "auto" and source in ("tokenizer", "default", *FAMILY_BY_TOKENS)):
        raise _mismatch(f"{cfg} says data.template: {chosen}, but the artefact records template {source!r}",
                        artefact / "danlu.json",
                        "the artefact comes from another run than this config; export the run directory the "
                        "artefact was trained in")


def _check_generation_config(path: Path, stop: list[int]) -> None:
    if not path.is_file():
        raise _mismatch("the artefact has no generation_config.json, so nothing tells a server where answers end",
                        path.parent, f"write one with eos_token_id: {stop} (or re-save the artefact with danlu)")
    eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    eos = eos if isinstance(eos, list) else [eos]
    missing = [i for i in stop if i not in eos]
    if missing:
        raise _mismatch(f"generation_config.json has eos_token_id {eos}, which lacks the trained stop ids "
                        f"{missing}", path, f"set eos_token_id to {stop} in {path}")


def check_hf_dir(out: Path, trained: TrainedChat) -> dict:
    """An exported Hugging Face directory carries the trained template and stop ids."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    if trained.template is not None and getattr(tok, "chat_template", None) != trained.template:
        raise _mismatch("the exported tokenizer's chat template differs from the one the run trained with", out,
                        "this is a danlu bug; please report it with the run directory")
    _check_generation_config(Path(out) / "generation_config.json", trained.stop_token_ids)
    return {"chat_template": trained.template is not None, "eos_token_id": trained.stop_token_ids}


def check_gguf_fields(path: Path, fields: dict, trained: TrainedChat) -> dict:
    """`fields` are the key/values read back from the GGUF file (see export.gguf.read_back)."""
    if trained.template is not None and fields.get("tokenizer.chat_template") != trained.template:
        raise _mismatch("the GGUF file's tokenizer.chat_template differs from the one the run trained with", path,
                        "this is a danlu bug; please report it with the run directory")
    eos = fields.get("tokenizer.ggml.eos_token_id")
    if eos != trained.turn_end_id:
        raise _mismatch(f"the GGUF file's EOS id is {eos}, the run's turn end {trained.turn_end!r} is "
                        f"{trained.turn_end_id}; llama.cpp would not stop at the end of an answer", path,
                        "this is a danlu bug; please report it with the run directory")
    return {"chat_template": trained.template is not None, "eos_token_id": eos}


def check_modelfile(path: Path, trained: TrainedChat, tokenizer) -> None:
    text = Path(path).read_text(encoding="utf-8")
    for tid in trained.stop_token_ids:
        token = tokenizer.convert_ids_to_tokens(tid)
        if f'PARAMETER stop "{token}"' not in text:
            raise _mismatch(f"the Modelfile lacks 'PARAMETER stop \"{token}\"'; Ollama would not stop there",
                            path, "this is a danlu bug; please report it with the run directory")
