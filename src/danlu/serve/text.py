"""Generated ids → text pieces for streaming: never emits half a UTF-8 character (byte-level BPE
splits Chinese characters across tokens), holds back text that may be the start of a stop
string, and cuts the answer at the first stop string."""

from __future__ import annotations


class TextStream:
    def __init__(self, tokenizer, stop: tuple[str, ...] = ()):
        self.tokenizer, self.stop = tokenizer, tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.text = ""  # all text decoded so far
        self.sent = 0  # characters of self.text already emitted

    def push(self, token_id: int) -> tuple[str, bool]:
        """Add one token; returns (text safe to emit now, whether a stop string was reached)."""
        self.ids.append(token_id)
        self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if self.stop:
            start = max(0, self.sent - max(len(s) for s in self.stop))
            hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
            if hits:
                end = min(hits)
                piece = self.text[self.sent:end] if end > self.sent else ""
                self.text, self.sent = self.text[:end], end
                return piece, True
        end = len(self.text.rstrip("\ufffd"))  # an incomplete character decodes as U+FFFD
        end -= self._stop_prefix(self.text[:end])
        piece = self.text[self.sent:end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return piece, False

    def _stop_prefix(self, text: str) -> int:
        """Length of the longest suffix of `text` that a stop string starts with."""
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best

    def flush(self) -> str:
        """The held-back rest, when generation ends without a stop string."""
        piece = self.text[self.sent:]
        self.sent = len(self.text)
        return piece
