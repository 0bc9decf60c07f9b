"""A small OpenAI-compatible chat server for tests: FastAPI + uvicorn on 127.0.0.1, a free port,
in a background thread. Its answers are deterministic functions of the request, so a test can
check every row; it records each request, can fail the next requests with given status codes
(429 with Retry-After, 5xx), and can answer slowly.

    with FakeTeacher() as fake:      # fake.url == "http://127.0.0.1:PORT/v1"
        fake.fail_next(429, 503)
        ...
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

TOPICS = ["tea", "rivers", "invoices", "bicycles", "printers", "passwords", "gardens", "trains", "salaries", "clouds",
          "茶叶", "河流", "发票", "自行车", "打印机", "密码", "花园", "火车", "工资", "云朵"]

WORDS = ("amber basalt cobalt dune ember fjord glacier harbor indigo jasper kelp lagoon meadow nectar onyx prairie "
         "quartz reef savanna tundra umber valley willow xenon yarrow zephyr 竹子 松树 海洋 山峰 沙漠 森林 草原 湖泊").split()


def answer_for(prompt: str) -> str:
    return f"ANSWER<{prompt}>"


class FakeTeacher:
    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.requests: list[dict] = []
        self._fail: list[int] = []
        self._lock = threading.Lock()
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._chat)
        self.server: uvicorn.Server | None = None
        self.url = ""

    def fail_next(self, *statuses: int) -> None:
        with self._lock:
            self._fail.extend(statuses)

    def user_prompts(self) -> list[str]:
        return [next(m["content"] for m in reversed(r["messages"]) if m["role"] == "user") for r in self.requests]

    async def _chat(self, request: Request):
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            n = len(self.requests)
            status = self._fail.pop(0) if self._fail else None
        if status is not None:
            headers = {"retry-after": "0"} if status == 429 else {}
            return JSONResponse({"error": {"message": f"fake {status}", "type": "fake", "param": None, "code": status}},
                                status_code=status, headers=headers)
        if self.delay:
            await asyncio.sleep(self.delay)
        prompt = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        content, finish = self._reply(prompt, n)
        return {"id": f"fake-{n}", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(content),
                          "total_tokens": len(prompt) + len(content)}}

    def _reply(self, prompt: str, n: int) -> tuple[str, str]:
        if "Write " in prompt and '"instruction"' in prompt:  # self-instruct request
            return self._tasks(n), "stop"
        if "<document" in prompt:
            return self._qa(prompt), "stop"
        if "CUT ME OFF" in prompt:
            return "half an answ", "length"
        return answer_for(prompt), "stop"

    def _tasks(self, n: int) -> str:
        """Three new tasks, an exact copy of the first, a near copy of the second, one incomplete."""
        new = []
        for i in range(3):
            k = 3 * n + i
            words = " ".join(WORDS[(k * 7 + j * 13) % len(WORDS)] for j in range(6))
            new.append({"instruction": f"Task {k}: explain {TOPICS[k % len(TOPICS)]} using the words {words}",
                        "input": "", "output": f"Output {k}."})
        copy = dict(new[0])
        near = dict(new[1], instruction=new[1]["instruction"].replace("explain", "explains"))
        broken = {"instruction": "Summarise this", "output": ""}
        return "Here you are:\n```json\n" + json.dumps(new + [copy, near, broken], ensure_ascii=False) + "\n```"

    def _qa(self, prompt: str) -> str:
        doc = re.search(r"<document[^>]*>\n(.*?)\n</document>", prompt, re.S).group(1)
        first = doc.split("\n")[0][:60]
        return json.dumps([{"question": f"What does the document say first about «{first}»?", "answer": first},
                           {"question": f"How long is the part that starts «{first}»?", "answer": f"{len(doc)} chars"}],
                          ensure_ascii=False)

    def __enter__(self) -> FakeTeacher:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
