"""image_url content parts: what a server reads (data URLs, paths inside --image-dir) and what it
refuses (remote URLs, paths outside, symlinks out, too large, not an image), each as a 400 naming
the part; and the request model's view of image parts."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from danlu.serve import protocol as P
from danlu.serve.errors import APIError
from danlu.serve.images import ImagePolicy, load_image
from danlu.serve.vision import conversation, refuse_images


def png(size=(8, 6), colour=(255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


@pytest.fixture
def folder(tmp_path):
    inside = tmp_path / "allowed"
    inside.mkdir()
    (inside / "red.png").write_bytes(png())
    (tmp_path / "secret.png").write_bytes(png(colour=(0, 0, 255)))
    (inside / "link.png").symlink_to(tmp_path / "secret.png")
    (inside / "notes.txt").write_text("not an image")
    return inside


def refusal(url: str, policy: ImagePolicy) -> APIError:
    with pytest.raises(APIError) as info:
        load_image(url, policy, "messages[0].content[1]")
    assert info.value.status == 400 and info.value.param == "messages[0].content[1]"
    return info.value


def test_data_url_decodes_to_rgb():
    img = load_image(data_url(png((8, 6))), ImagePolicy(), "p")
    assert img.size == (8, 6) and img.mode == "RGB" and img.getpixel((0, 0)) == (255, 0, 0)


def test_path_inside_image_dir_is_read(folder):
    policy = ImagePolicy((folder,))
    assert load_image(str(folder / "red.png"), policy, "p").getpixel((1, 1)) == (255, 0, 0)
    assert load_image((folder / "red.png").as_uri(), policy, "p").size == (8, 6)


@pytest.mark.parametrize("url, code, words", [
    ("https://example.com/cat.png", "remote_image_refused", "offline"),
    ("http://127.0.0.1/cat.png", "remote_image_refused", "base64 data URL"),
    ("ftp://host/cat.png", "remote_image_refused", "offline"),
    ("gopher://host/x", "invalid_image", "scheme"),
    ("data:image/png;base64,@@@", "invalid_image", "not valid base64"),
    ("data:text/plain,hello", "invalid_image", "not a base64 image data URL"),
    (data_url(b"plain text, not a picture"), "invalid_image", "not a readable image"),
])
def test_refused_urls(url, code, words):
    error = refusal(url, ImagePolicy())
    assert error.code == code and words in error.message


def test_paths_are_refused_without_image_dirs(folder):
    error = refusal(str(folder / "red.png"), ImagePolicy())
    assert error.code == "image_path_refused" and "--image-dir" in error.message


@pytest.mark.parametrize("name", ["../secret.png", "link.png", "missing.png", "/etc/passwd"])
def test_paths_outside_or_missing_are_refused_alike(folder, name):
    url = name if name.startswith("/") else str(folder / name)
    error = refusal(url, ImagePolicy((folder,)))
    assert error.code == "image_path_refused" and "inside the server's --image-dir" in error.message


def test_size_caps(folder):
    assert refusal(data_url(png((64, 64))), ImagePolicy(max_bytes=50)).code == "image_too_large"
    assert refusal(str(folder / "red.png"), ImagePolicy((folder,), max_bytes=50)).code == "image_too_large"
    error = refusal(data_url(png((40, 40))), ImagePolicy(max_pixels=1000))
    assert error.code == "image_too_large" and "40x40" in error.message
    assert refusal(str(folder / "notes.txt"), ImagePolicy((folder,))).code == "invalid_image"


def message(*parts, role="user") -> P.ChatMessage:
    return P.ChatMessage.model_validate({"role": role, "content": list(parts)})


IMAGE = {"type": "image_url", "image_url": {"url": data_url(png())}}
TEXT = {"type": "text", "text": "what colour?"}


def test_request_model_reads_image_parts():
    m = message(TEXT, IMAGE)
    assert m.text() == "what colour?" and [i for i, _ in m.image_parts()] == [1]
    assert P.role_order_error([message(IMAGE)]) is None  # an image alone is a question
    problem = P.role_order_error([message(TEXT), message(IMAGE, role="assistant"), message(TEXT)])
    assert problem and "only user messages may carry images" in problem[0] and problem[1] == 1


def test_conversation_keeps_part_order_and_caps_count():
    conv = conversation([message(TEXT, IMAGE)], ImagePolicy())
    assert [p["type"] for p in conv[0]["content"]] == ["text", "image"]
    assert conv[0]["content"][1]["image"].size == (8, 6)
    with pytest.raises(APIError) as info:
        conversation([message(IMAGE, IMAGE, IMAGE)], ImagePolicy(max_images=2))
    assert info.value.code == "too_many_images"


def test_text_only_model_refuses_images_naming_the_part():
    class Entry:
        id = "tiny"

    refuse_images(Entry(), [message(TEXT)])  # no image: nothing to refuse
    with pytest.raises(APIError) as info:
        refuse_images(Entry(), [message(TEXT), message(TEXT, IMAGE)])
    assert info.value.param == "messages[1].content[1]" and info.value.code == "images_not_supported"
