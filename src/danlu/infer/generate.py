"""Batched chat generation with the run's template and stop tokens (left padding, greedy by
default, seeded sampling optional)."""

from __future__ import annotations

from collections.abc import Iterator


def render_prompts(tokenizer, conversations: list[list[dict]], tools=None) -> list[str]:
    """Through ChatTemplate.render, as training renders: tools (and tool turns) by the template
    when it writes them, else in danlu's text form."""
    from danlu.chat.templates import ChatTemplate

    template = ChatTemplate(tokenizer, "tokenizer")
    return [template.render(c, tools=tools, add_generation_prompt=True) for c in conversations]


def generate(
    loaded,
    conversations: list[list[dict]],
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    batch_size: int = 16,
    tools=None,
) -> list[dict]:
    """One completion per conversation: {"text", "prompt_tokens", "completion_tokens", "finish_reason"}.
    A vision-language model (loaded.processor) takes image parts in the user turns."""
    import torch

    if getattr(loaded, "processor", None) is not None:
        from danlu.infer import vision

        return vision.generate(loaded, conversations, max_new_tokens=max_new_tokens, temperature=temperature,
                               top_p=top_p, seed=seed)

    tok, model = loaded.tokenizer, loaded.model
    prompts = render_prompts(tok, conversations, tools)
    if seed is not None:
        torch.manual_seed(seed)
    out: list[dict] = []
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i:i + batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                gen = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None,
                    top_p=top_p if temperature > 0 else None,
                    top_k=None,
                    eos_token_id=loaded.stop_token_ids,
                    pad_token_id=tok.pad_token_id,
                )
            width = enc["input_ids"].shape[1]
            for row, mask in zip(gen, enc["attention_mask"]):
                new = row[width:].tolist()
                stopped = next((k for k, t in enumerate(new) if t in loaded.stop_token_ids), None)
                finish = "stop" if stopped is not None else "length"
                if stopped is not None:
                    new = new[:stopped]
                else:
                    new = [t for t in new if t != tok.pad_token_id]
                out.append({
                    "text": tok.decode(new, skip_special_tokens=True),
                    "prompt_tokens": int(mask.sum()),
                    "completion_tokens": len(new) + (1 if stopped is not None else 0),
                    "finish_reason": finish,
                })
    finally:
        tok.padding_side = side
    return out


def stream(loaded, conversation: list[dict], *, max_new_tokens: int = 256, temperature: float = 0.0,
           top_p: float = 1.0, seed: int | None = None, tools=None) -> Iterator[str]:
    """Text pieces as they are generated (a background thread runs generate)."""
    import threading

    import torch
    from transformers import TextIteratorStreamer

    tok, model = loaded.tokenizer, loaded.model
    if getattr(loaded, "processor", None) is not None:
        yield from _stream_vision(loaded, conversation, max_new_tokens=max_new_tokens, temperature=temperature,
                                  top_p=top_p, seed=seed)
        return
    prompt = render_prompts(tok, [conversation], tools)[0]
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    if seed is not None:
        torch.manual_seed(seed)
    kwargs = dict(**enc, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                  temperature=temperature if temperature > 0 else None, top_p=top_p if temperature > 0 else None,
                  top_k=None, eos_token_id=loaded.stop_token_ids, pad_token_id=tok.pad_token_id, streamer=streamer)
    thread = threading.Thread(target=lambda: model.generate(**kwargs), daemon=True)
    thread.start()
    yield from streamer
    thread.join()


def _stream_vision(loaded, conversation: list[dict], **kwargs) -> Iterator[str]:
    import threading

    from transformers import TextIteratorStreamer

    from danlu.infer.vision import generate_ids

    streamer = TextIteratorStreamer(loaded.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    thread = threading.Thread(target=lambda: generate_ids(loaded.model, loaded.processor, conversation,
                                                          stop_token_ids=loaded.stop_token_ids, streamer=streamer,
                                                          **kwargs), daemon=True)
    thread.start()
    yield from streamer
    thread.join()
