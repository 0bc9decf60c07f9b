"""Model and tokenizer loading: hub ids, local directories and offline builtin:* models."""
