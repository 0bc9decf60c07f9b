"""Data for training: reading rows with their file:line (readers.py; `lf:` sources come from
interop/llamafactory), formats/ (one file per input layout), encode.py (conversation →
input_ids/labels with masks), collate.py (padding or packing), dataset.py and report.py."""
