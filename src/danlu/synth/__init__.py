"""`danlu synth`: training rows from a teacher model (run.py), its client (client.py), the prompts
(prompts.py) and the append-only store that makes a run resumable (store.py)."""
