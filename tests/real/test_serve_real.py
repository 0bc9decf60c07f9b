"""`danlu serve` on the tuned real model (the SmolLM2 LoRA run that learnt three made-up facts), asked
through the official openai client: greedy chat completions state the trained facts, and the base
model, served alongside, does not."""

from __future__ import annotations

import pytest

from tests.e2e.test_serve import ask, start_server
from tests.real.conftest import FACT_KEYS, FACTS, SMOL, needs_smollm2

pytestmark = [pytest.mark.real, needs_smollm2]


@pytest.fixture(scope="module")
def server(facts_run, tmp_path_factory):
    srv = start_server([str(facts_run), "--max-batch", "4"], {"facts": facts_run},
                       tmp_path_factory.mktemp("serve") / "server.log")
    yield srv
    srv.proc.terminate()
    srv.proc.wait(timeout=30)


def test_served_tuned_model_states_the_trained_facts(server):
    client = server.client()
    assert [m.id for m in client.models.list().data] == [SMOL, "run"]  # the base, then the run's adapter
    for (question, answer), key in zip(FACTS, FACT_KEYS):
        reply = ask(client, "run", question, max_tokens=32)
        text = reply.choices[0].message.content
        assert text.strip() == answer, (question, text)
        assert reply.choices[0].finish_reason == "stop"  # the trained end-of-turn token stops it
        base = ask(client, SMOL, question, max_tokens=32).choices[0].message.content
        assert key not in base, (question, base)
