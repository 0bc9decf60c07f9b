"""Speech recognition: fine-tune a Whisper-family model (WhisperForConditionalGeneration and its
WhisperProcessor) on {audio, text} rows — wav / flac / ogg paths relative to the data file, read
with soundfile and resampled to the model's rate (16 kHz) with soxr — with any method that fits
the model (full, LoRA ...). Loss: cross-entropy on the transcript tokens. Held-out: greedy
transcripts scored by WER and CER (Chinese by character), before and after training."""

from __future__ import annotations

from functools import cache

from pydantic import Field

from danlu.stages.base import Stage
from danlu.stages.registry import register_stage
from danlu.stages.shape import PlannedRun, StageShape


@cache
def asr_trainer_class():
    from transformers import Trainer

    from danlu.train.trainer import DanluTrainerMixin

    class AsrTrainer(DanluTrainerMixin, Trainer):
        pass

    return AsrTrainer


@register_stage("asr")
class Asr(Stage):
    summary = "speech recognition (Whisper family): {audio, text} rows; WER and CER before and after"
    sample_kind = "speech"
    task = "asr"

    audio_column: str = Field("audio", description="The column naming each row's clip (wav, flac, ogg; relative "
                              "to the rows' own location). Clips are resampled to the model's rate (16 kHz).")
    text_column: str = Field("text", description="Column holding the transcript.")
    language: str | None = Field(None, description="Whisper language of the transcripts (en, zh, …): its token "
                                 "starts every target; default: the tokenizer's setting (none for "
                                 "builtin:tiny-whisper).")
    max_new_tokens: int = Field(64, ge=1, le=448, description="Tokens generated per held-out clip when scoring.")
    eval_before: bool = Field(True, description="Also score the held-out clips before training (the WER to beat).")

    def memory_shape(self, run: PlannedRun) -> StageShape:
        return StageShape(notes=["asr: planned as a decoder over the transcript tokens; the audio encoder's "
                                 "activations are not counted"])

    def load_processor(self, run_config):
        from danlu.models.load import load_processor

        m = run_config.model
        processor = load_processor(m.name_or_path, "audio", revision=m.revision, trust_remote_code=m.trust_remote_code)
        if not hasattr(processor, "feature_extractor") or not hasattr(processor, "tokenizer"):
            from danlu.errors import ConfigError

            raise ConfigError(f"{m.name_or_path} has no speech processor (feature extractor + tokenizer)",
                              where="model.name_or_path", hint="stage: asr needs a Whisper-family model, "
                              "e.g. builtin:tiny-whisper or openai/whisper-small")
        if self.language:
            processor.tokenizer.set_prefix_tokens(language=self.language, task="transcribe")
        return processor

    def build_datasets(self, ctx):
        from danlu.stages._asr_data import build_asr_datasets

        train, held = build_asr_datasets(ctx, self)
        ctx.train_rows = train
        if self.language:
            ctx.artefact_meta.update(language=self.language)
        return train, held

    def build_trainer(self, ctx, train_dataset, eval_dataset):
        from danlu.stages._asr_data import SpeechCollator, held_out_scores
        from danlu.stages._trl_common import finish
        from danlu.train.args import training_arguments
        from danlu.train.callbacks import standard_callbacks

        if eval_dataset is not None and self.eval_before:
            ctx.held_out_before = held_out_scores(ctx, eval_dataset, self)
        start = ctx.model.config.decoder_start_token_id
        trainer = asr_trainer_class()(
            model=ctx.model,
            args=training_arguments(ctx, has_eval=eval_dataset is not None),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=SpeechCollator(start),
            processing_class=ctx.tokenizer,
            callbacks=standard_callbacks(ctx),
        )
        return finish(trainer, ctx)

    def after_training(self, ctx, trainer) -> dict:
        from danlu.stages._asr_data import held_out_scores

        if not trainer.eval_dataset:
            return {}
        after = held_out_scores(ctx, trainer.eval_dataset, self)
        out = {"eval_wer": after["wer"], "eval_cer": after["cer"], "eval_samples": len(trainer.eval_dataset),
               "eval_examples": after["examples"]}
        if ctx.held_out_before:
            out.update(eval_wer_before=ctx.held_out_before["wer"], eval_cer_before=ctx.held_out_before["cer"])
        loss = trainer.evaluate().get("eval_loss")
        if loss is not None:
            out["eval_loss"] = round(loss, 4)
        return out
