"""Meeting other tools' files as they are: LLaMA-Factory training configs (llamafactory.py).
Its datasets (dataset_info.json entries) are read by data/lf.py as `lf:NAME` sources."""
