"""`danlu bench`: the seed recipe (transformers + peft + trl SFTTrainer, as seed 003 teaches it)
and danlu on the same model, data, LoRA settings and loss-bearing tokens, side by side."""
