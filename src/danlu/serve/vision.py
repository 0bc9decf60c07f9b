"""Chat requests to a vision-language model (the `hf` backend over an image-text-to-text model).

The request's messages become one conversation whose user turns hold PIL images
(danlu.serve.images checks and decodes each `image_url` part), rendered by the model's processor
(its chat template, the same one training used) into input ids + pixel values.

Generation runs on the engine's worker thread as one command per request (model.generate with
the image inputs; continuous batching splices rows of text-only prompts and cannot carry pixel
values or a VLM's multimodal rotary positions). Tokens reach the client as they are generated:
each goes through the same Sequence as the batched path (stop strings, stop tokens, max_tokens,
events), and a client that hangs up stops its generate at the next token."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from danlu.serve.engine import fail_rows
from danlu.serve.errors import bad_request
from danlu.serve.images import ImagePolicy, load_image

log = logging.getLogger(__name__)


@dataclass
class VisionPrompt:
    """A rendered chat prompt for a VLM: the processor's inputs and their token ids (for usage)."""
    inputs: object  # transformers BatchFeature (input_ids, attention_mask, pixel_values ...)
    ids: list[int]
    images: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def image_count(messages) -> int:
    return sum(len(m.image_parts()) for m in messages)


def refuse_images(entry, messages) -> None:
    """A text-only model given an image: one clear 400 naming the first image part."""
    for i, m in enumerate(messages):
        for j, _ in m.image_parts():
            raise bad_request(f"messages[{i}].content[{j}]: the model {entry.id!r} is a text-only model and "
                              "cannot take images; send text only, or serve a vision-language model",
                              param=f"messages[{i}].content[{j}]", code="images_not_supported")


def conversation(messages, policy: ImagePolicy) -> list[dict]:
    """Request messages → {"role", "content"} dicts; content with images is a list of parts
    ({"type": "image", "image": PIL} / {"type": "text"}) in the order the client sent them."""
    if image_count(messages) > policy.max_images:
        raise bad_request(f"messages: {image_count(messages)} images; this server takes at most "
                          f"{policy.max_images} per request", param="messages", code="too_many_images")
    out = []
    for i, m in enumerate(messages):
        message = m.for_template()
        if m.image_parts():
            parts = []
            for j, part in enumerate(m.content):
                if part.type == "image_url":
                    parts.append({"type": "image", "image": load_image(part.image_url.url, policy,
                                                                       f"messages[{i}].content[{j}]")})
                else:
                    parts.append({"type": "text", "text": part.text})
            message["content"] = parts
        out.append(message)
    return out


def check_vision_request(body) -> None:
    """What the VLM path does not do yet: a 400 naming the field."""
    for field, on in (("tools", bool(body.tools)), ("response_format", _constrained(body.response_format)),
                      ("logprobs", bool(body.logprobs)), ("presence_penalty", body.presence_penalty != 0),
                      ("frequency_penalty", body.frequency_penalty != 0)):
        if on:
            raise bad_request(f"{field} is not supported for vision-language models by danlu serve yet",
                              param=field, code="unsupported_parameter")


def _constrained(fmt) -> bool:
    return bool(fmt) and fmt.get("type", "text") != "text"


def render(processor, messages: list[dict]) -> VisionPrompt:
    from danlu.infer.vision import encode

    try:
        inputs = encode(processor, messages)
    except (ValueError, TypeError) as exc:
        raise bad_request(f"messages: the model's processor refused this conversation: {exc}",
                          param="messages") from None
    images = sum(isinstance(m.get("content"), list) and sum(p.get("type") == "image" for p in m["content"])
                 for m in messages)
    return VisionPrompt(inputs, inputs["input_ids"][0].tolist(), images)


def run(engine, request, sequences, prompt: VisionPrompt) -> None:
    """On the worker thread: generate each choice of `request` (one generate per choice), pushing
    tokens into its Sequence as they come."""
    model = engine.model
    inputs = prompt.inputs.to(model.device)
    if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    for k, seq in enumerate(sequences):
        if request.cancelled:
            return
        try:
            _generate(engine, model, inputs, request, seq)
        except Exception as exc:  # noqa: BLE001 — a failed generate fails its request, not the server
            fail_rows(sequences[k:], exc)
            return


def _generate(engine, model, inputs, request, seq) -> None:
    import torch

    watch, params = _Watch(seq, request), seq.params
    if params.seed is not None:
        torch.manual_seed(params.seed + seq.index)
    with _adapter(model, request.adapter), torch.inference_mode():
        model.generate(**inputs, max_new_tokens=params.max_tokens, do_sample=params.temperature > 0,
                       temperature=params.temperature if params.temperature > 0 else None,
                       top_p=params.top_p if params.temperature > 0 else None, top_k=None,
                       eos_token_id=list(request.stop_ids) or None, pad_token_id=engine.pad_id,
                       streamer=watch, stopping_criteria=[watch.criterion()])
    if not watch.done and not request.cancelled:  # generate ended before the Sequence said so
        seq.finish("length")
    engine.counters["tokens"] += len(seq.tokens)


class _Watch:
    """A generate streamer feeding a Sequence; its stopping criterion ends generate once the
    Sequence finished (stop string, stop token, max_tokens) or the client went away."""

    def __init__(self, seq, request):
        self.seq, self.request, self.done, self.prompt_seen = seq, request, False, False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate first puts the prompt
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            if not self.done:
                self.done = self.seq.push(int(token))

    def end(self) -> None:
        pass

    def criterion(self):
        import torch
        from transformers import StoppingCriteria

        watch = self

        class Finished(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                stop = watch.done or watch.request.cancelled
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        return Finished()


class _adapter:
    """Route a generate through one LoRA adapter (or the bare base) of a PEFT model."""

    def __init__(self, model, adapter: str | None):
        self.model, self.adapter, self.off = model, adapter, None

    def __enter__(self):
        if not hasattr(self.model, "peft_config"):
            return self
        if self.adapter is None:
            self.off = self.model.disable_adapter()
            self.off.__enter__()
        elif self.model.active_adapter != self.adapter:
            self.model.set_adapter(self.adapter)
        return self

    def __exit__(self, *exc):
        if self.off is not None:
            self.off.__exit__(*exc)
        return False
