"""The seed recipe: seed 003's training script (transformers + peft + trl SFTTrainer, per-sample
padding, no packing, default attention) with the benchmark's LoRA settings. Changes from the
seed text: no 4-bit base and no fp16 when there is no CUDA GPU (bitsandbytes' CUDA kernels and
fp16 autocast need one), the model/data/lengths of the benchmark, and two measurements (step
times and loss-token counts) that do not change training.

Run as: python -m danlu.bench.seed_recipe SPEC.json"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(spec_path: str) -> None:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    spec = json.loads(Path(spec_path).read_text())
    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    tokenizer.pad_token = tokenizer.eos_token  # as the seed writes it
    model_kwargs = {}
    if cuda and spec.get("qlora"):
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float16,
            bnb_4bit_use_double_quant=True)
        model_kwargs["device_map"] = "auto"
    model = AutoModelForCausalLM.from_pretrained(spec["model"], **model_kwargs)
    if model_kwargs:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    peft_config = LoraConfig(r=spec["r"], lora_alpha=spec["alpha"], lora_dropout=spec["dropout"], bias="none",
                             task_type="CAUSAL_LM", target_modules=spec["target_modules"])
    dataset = load_dataset("json", data_files=spec["data"], split="train")  # rows: {"text": ...}
    args = SFTConfig(
        output_dir=spec["output_dir"],
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=spec.get("grad_accum", 1),
        learning_rate=spec["learning_rate"],
        logging_steps=10,
        fp16=cuda,
        num_train_epochs=spec.get("epochs", 1),
        max_steps=spec.get("max_steps", -1),
        dataset_text_field="text",
        max_length=spec["max_length"],
        packing=False,
        report_to="none",
        save_strategy="no",
        seed=spec.get("seed", 42),
        use_cpu=not cuda,
        dataloader_pin_memory=cuda,
    )
    steps: list[dict] = []

    class Timing(TrainerCallback):  # measurement only
        def on_step_begin(self, a, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            self.t0, self.tokens0 = time.perf_counter(), counter["tokens"]

        def on_step_end(self, a, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            steps.append({"step": state.global_step, "seconds": time.perf_counter() - self.t0,
                          "tokens": counter["tokens"] - self.tokens0})

    counter = {"tokens": 0}

    class CountingSFTTrainer(SFTTrainer):  # counts the loss-bearing tokens it is given
        def compute_loss(self, model, inputs, *a, **kw):
            labels = inputs.get("labels")
            if labels is not None:
                counter["tokens"] += int(labels[:, 1:].ne(-100).sum())
            return super().compute_loss(model, inputs, *a, **kw)

    trainer = CountingSFTTrainer(model=model, train_dataset=dataset, peft_config=peft_config, args=args,
                                 processing_class=tokenizer, callbacks=[Timing()])
    t0 = time.perf_counter()
    trainer.train()
    runtime = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    Path(spec["result"]).write_text(json.dumps({
        "steps": steps, "runtime_s": runtime, "final_loss": losses[-1] if losses else None, "losses": losses,
        "trainable_params": trainable, "total_params": total, "loss_tokens": counter["tokens"],
        "peak_cuda_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
