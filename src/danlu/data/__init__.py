"""Data: reading rows (file:line), formats, chat templates, tokenisation with label masks,
collation (padding or packing), reports — and the data workbench commands."""
