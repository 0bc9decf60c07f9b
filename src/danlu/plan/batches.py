"""The largest micro-batch a run will really make, from the training set's sample lengths.

Without the data the planner assumes every micro-batch is `batch_size` rows of `max_length`
tokens (the worst case). With the data counted (`danlu plan` with a data file, `danlu train`
after tokenising), the collators' own rules give the real shape, and a short-sample dataset
is far below the worst case (issue 18: SmolLM2 LoRA on support_qa, 16 × 256 token slots
planned, 16 × ~120 made — the planner said 9.85 GB, the run peaked at 3.06 GB):

- padding (data.packing false): `batch_size` rows as wide as the batch's longest sample;
- packing: the batch's samples first-fit into rows as wide as its longest sample
  (`danlu.data.collate.first_fit`, the collator's function), so fewer rows when samples are short.

Peak RSS is a high-water mark, so the planned shape is the largest batch (in token slots) of
the batches an epoch makes, over as many shuffled orders as the run has epochs (the Trainer
reshuffles every epoch), seeded so that the plan is reproducible."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

SFT_LIKE = ("sft", "pretrain")  # stages whose rows are the counted samples themselves
MAX_ORDERS = 8  # shuffled orders simulated at most (more epochs change the maximum little)


@dataclass(frozen=True)
class BatchShape:
    rows: int  # rows of the largest micro-batch
    width: int  # its tokens per row
    note: str = ""


def worst_batch(spec) -> BatchShape:
    """rows × width of the largest micro-batch this run makes (per stage row: DPO's pairs are
    multiplied by the stage elsewhere)."""
    lengths = [n for n in (spec.extra.get("lengths") or []) if n > 0]
    b, cap = spec.batch_size, spec.max_length
    if not lengths or spec.stage not in SFT_LIKE:
        return BatchShape(b, cap)
    lengths = [min(n, cap) for n in lengths]
    orders = max(1, min(MAX_ORDERS, math.ceil(spec.epochs or 1)))
    best = (0, b, cap)
    rng = random.Random(0)
    for _ in range(orders):
        order = list(lengths)
        rng.shuffle(order)
        for i in range(0, len(order), b):
            rows, width = _shape(order[i:i + b], cap, spec.packing)
            best = max(best, (rows * width, rows, width))
    _, rows, width = best
    if (rows, width) == (b, cap):
        return BatchShape(b, cap)
    how = "packed into" if spec.packing else "padded to"
    return BatchShape(rows, width, f"largest micro-batch of the data: {b} samples {how} {rows} × {width} tokens "
                                   f"(train.max_length {cap})")


def _shape(batch: list[int], cap: int, packing: bool) -> tuple[int, int]:
    width = min(cap, max(batch))
    if not packing:
        return len(batch), width
    from danlu.data.collate import first_fit

    bins = first_fit(batch, width)
    return len(bins), max(sum(batch[i] for i in row) for row in bins)
