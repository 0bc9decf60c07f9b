"""Continued pretraining on plain text: every document is tokenised (BOS if the tokenizer adds one,
EOS at the end), the documents are concatenated in order and cut into blocks of `block_size`
tokens, and the loss is on every token (the classic run_clm recipe). A block may span two
documents; the EOS between them tells the model where one ends."""

from __future__ import annotations

from pydantic import Field

from danlu.stages.base import Stage
from danlu.stages.registry import register_stage
from danlu.stages.shape import PlannedRun, StageShape


def pack_blocks(docs: list[list[int]], block_size: int, keep_remainder: bool = True) -> list[list[int]]:
    """Concatenate token lists and cut them into blocks of `block_size` (the last one may be shorter)."""
    stream = [t for doc in docs for t in doc]
    blocks = [stream[i:i + block_size] for i in range(0, len(stream), block_size)]
    if blocks and len(blocks[-1]) < block_size and (not keep_remainder or len(blocks[-1]) < 2):
        blocks.pop()
    return blocks


@register_stage("pretrain")
class Pretrain(Stage):
    summary = "continued pretraining on plain text, packed into blocks, loss on all tokens"
    sample_kind = "text"

    block_size: int | None = Field(
        None, ge=8, description="Tokens per training block; default train.max_length."
    )
    keep_remainder: bool = Field(
        True, description="Train on the last, shorter block too (false: drop it, as run_clm does)."
    )

    def memory_shape(self, run: PlannedRun) -> StageShape:
        return StageShape()

    def build_datasets(self, ctx):
        from danlu.data.dataset import TokenizedDataset, iter_samples, split_eval
        from danlu.data.encode import Encoded, encode_text
        from danlu.data.report import DataReport
        from danlu.errors import DataError

        cfg = ctx.config
        size = self.block_size or cfg.train.max_length
        seed = cfg.data.shuffle_seed if cfg.data.shuffle_seed is not None else cfg.train.seed

        def blocks_of(sources, split: str) -> list[Encoded]:
            report = DataReport(split=split)
            docs = []
            for sample in iter_samples(sources, fmt=cfg.data.format, kinds=("text",), opts=ctx.format_options(),
                                       on_bad_row=cfg.data.on_bad_row, report=report):
                docs.append(encode_text(sample, ctx.tokenizer).input_ids)
                if split == "train" and cfg.data.max_samples and len(docs) >= cfg.data.max_samples:
                    break
            blocks = [Encoded(b, list(b)) for b in pack_blocks(docs, size, self.keep_remainder)]
            report.kept, report.lengths = len(docs), [len(d) for d in docs]
            report.label_tokens = sum(len(b) for b in blocks)
            ctx.reports.append(report)
            report.log_summary()
            if not blocks:
                raise DataError(f"no {split} text to train on in {sources}", where=f"data.{split}",
                                hint="pretrain reads {\"text\": ...} rows or .txt files; see data_report.json")
            return blocks

        train = blocks_of(cfg.data.train, "train")
        if cfg.data.eval:
            return TokenizedDataset(train), TokenizedDataset(blocks_of(cfg.data.eval, "eval"))
        if cfg.data.eval_split > 0:
            kept, held = split_eval(train, cfg.data.eval_split, seed)
            return TokenizedDataset(kept), TokenizedDataset(held)
        return TokenizedDataset(train), None

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from danlu.data.collate import PaddingCollator
        from danlu.train.trainer import build_causal_lm_trainer

        # blocks are already full rows: plain padding (only the last block is shorter), no packing
        return build_causal_lm_trainer(ctx, train_dataset, eval_dataset,
                                       collator=PaddingCollator(ctx.tokenizer.pad_token_id))
