"""Training: the runner (build → fit → save), danlu's Trainer mixin, checkpoints, callbacks."""
