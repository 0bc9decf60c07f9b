"""LLaMA-Factory, in one place: its training YAML → a danlu config (config.py), its
dataset_info.json entries read as `lf:NAME` sources (dataset_info.py), and its row layouts
(alpaca, sharegpt, openai; ranking, kto_tag) → danlu samples (rows.py)."""
