"""Meeting other tools' files as they are: LLaMA-Factory training configs and datasets (llamafactory/)."""
