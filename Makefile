# Two commands do all setup on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned in requirements.txt to the CPU build (an unpinned torch pulls a multi-GB CUDA build).
INSTALLED := $(VENV)/.installed

.PHONY: install browser test test-fast demo bench clean

install: $(INSTALLED) browser

# The browser test drives Debian's chromium (playwright cannot download a browser here); CJK fonts so the
# board's Chinese labels render in screenshots.
browser:
	@test -x /usr/bin/chromium && test -d /usr/share/fonts/opentype/noto || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; }

$(INSTALLED): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The whole suite, tiny models plus the marked real-model smoke tests; 2 workers for 2 cores.
test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q -p no:cacheprovider

test-fast: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q -p no:cacheprovider -m "not real_model"

demo: install
	$(BIN)/tunewise demo

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) runs .pytest_cache
