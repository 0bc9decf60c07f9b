"""Model merging: linear averaging (model soup), task arithmetic, TIES and DARE of fine-tuned models
or adapters of one base (formulas.py: the tensor math; sources.py: reading inputs; run.py: the merge)."""
