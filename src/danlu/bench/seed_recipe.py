"""The seed recipe: seed 003's training script (transformers + peft + trl SFTTrainer, per-sample
padding, no packing, default attention) with the benchmark's LoRA settings. Changes from the
seed text: no 4-bit base and no fp16 when there is no CUDA GPU (bitsandbytes' CUDA kernels and
fp16 autocast need one), the model/data/lengths of the benchmark, and two measurements (step
times and loss-token counts) that do not change training. Everything else is TRL's SFTConfig
default, as a user of the seed gets it: bf16 autocast and gradient checkpointing on. `"bf16":
false` in the spec (danlu bench --seed-precision fp32) turns the autocast off, for CPUs without
native bf16, where TRL's default runs every matmul in emulated bf16.

Run as: python -m danlu.bench.seed_recipe SPEC.json"""

from __future__ import annotations

import json
import statistics
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
        **({"bf16": spec["bf16"]} if spec.get("bf16") is not None else {}),
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
            parts = counter.pop("parts", [])
            # with num_items_in_batch each micro-batch loss is already a share of the step's mean
            loss = sum(parts) if counter.pop("summed", False) else sum(parts) / max(1, len(parts))
            steps.append({"step": state.global_step, "seconds": time.perf_counter() - self.t0,
                          "tokens": counter["tokens"] - self.tokens0, "loss": loss})

    counter = {"tokens": 0}

    class CountingSFTTrainer(SFTTrainer):  # counts the loss-bearing tokens it is given, keeps each loss
        def compute_loss(self, model, inputs, *a, **kw):
            labels = inputs.get("labels")
            if labels is not None:
                counter["tokens"] += int(labels[:, 1:].ne(-100).sum())
            out = super().compute_loss(model, inputs, *a, **kw)
            loss = out[0] if isinstance(out, tuple) else out
            counter.setdefault("parts", []).append(float(loss.detach()))
            counter["summed"] = kw.get("num_items_in_batch") is not None
            return out

    trainer = CountingSFTTrainer(model=model, train_dataset=dataset, peft_config=peft_config, args=args,
                                 processing_class=tokenizer, callbacks=[Timing()])
    t0 = time.perf_counter()
    trainer.train()
    runtime = time.perf_counter() - t0
    if spec.get("adapter_dir"):  # the seed's step 8, for bench/quality.py to ask the trained model
        trainer.model.save_pretrained(spec["adapter_dir"])
    losses = [s["loss"] for s in steps]  # per optimizer step, as danlu logs them
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    Path(spec["result"]).write_text(json.dumps({
        "steps": steps, "runtime_s": runtime, "final_loss": statistics.fmean(losses[-10:]) if losses else None, "losses": losses,
        "trainable_params": trainable, "total_params": total, "loss_tokens": counter["tokens"],
        "peak_cuda_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "precision": "bf16" if args.bf16 else ("fp16" if args.fp16 else "fp32"),
        "gradient_checkpointing": bool(args.gradient_checkpointing),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
