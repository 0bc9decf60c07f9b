"""An Ollama Modelfile next to the GGUF file: FROM the file, the chat template in Ollama's Go
template syntax for the template families danlu knows (ChatML, Llama 3), and one
`PARAMETER stop` per stop token of the run, so `ollama create NAME -f Modelfile` gives a model
that ends its answers where the fine-tune learned to.

For other templates no TEMPLATE line is written: Ollama then picks its template by matching the
chat template embedded in the GGUF file (tokenizer.chat_template)."""

from __future__ import annotations

from pathlib import Path

# Ollama keeps system messages in .Messages (and also collects them into .System), so a loop
# over .Messages renders system, user and assistant turns in order, as the Jinja templates do.
CHATML = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)
LLAMA3 = (
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
)


def template_family(template: str | None) -> str | None:
    """chatml | llama3 | None, from the markers the Jinja template writes."""
    if not template:
        return None
    if "<|im_start|>" in template and "<|im_end|>" in template:
        return "chatml"
    if "<|start_header_id|>" in template and "<|eot_id|>" in template:
        return "llama3"
    return None


def modelfile(gguf_name: str, trained, tokenizer, *, source: str = "") -> str:
    family = template_family(trained.template)
    lines = [f"# Ollama Modelfile written by `danlu export` from {source}",
             "# create the model with: ollama create NAME -f Modelfile", f"FROM ./{gguf_name}"]
    if family == "chatml":
        lines.append(f'TEMPLATE """{CHATML}"""')
    elif family == "llama3":
        lines.append(f'TEMPLATE """{LLAMA3}"""')
    else:
        lines.append("# no TEMPLATE: Ollama matches the chat template embedded in the GGUF file")
    for tid in trained.stop_token_ids:
        token = tokenizer.convert_ids_to_tokens(tid)
        if token:
            lines.append(f'PARAMETER stop "{token}"')
    return "\n".join(lines) + "\n"


def write_modelfile(folder: Path, gguf_name: str, trained, tokenizer, *, source: str = "") -> Path:
    path = Path(folder) / "Modelfile"
    path.write_text(modelfile(gguf_name, trained, tokenizer, source=source), encoding="utf-8")
    return path
