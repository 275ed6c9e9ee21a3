# Two commands for a newcomer: `make demo` (AG News case) and `make test`.
# Both create .venv and install the pinned stack first; re-running skips what is done.
#
# The install has two steps (README "Install"):
#   1. torch, WITH its dependencies, by pip's normal resolver: the CPU or CUDA build your platform gets.
#      TORCH is the requirement, TORCH_PIP extra pip options for this step only, e.g. the CPU-only builds:
#        make install TORCH_PIP="--index-url https://download.pytorch.org/whl/cpu"
#   2. everything else from a lock file (LOCK: requirements-dev.lock, or requirements.lock for the runtime
#      set only), without dependency resolution: quaterion's metadata is wrong for this stack.
# Other Python: `make test PYTHON=python3.13` (a .venv of another version is rebuilt; or pass VENV=.venv313).
PYTHON ?= python3.11
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_PIP ?=
LOCK ?= requirements-dev.lock
BIN := $(VENV)/bin
DOCS_SITE ?= site
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install demo demo-banking demo-clickbait test lint docs bench clean lock FORCE

install: $(VENV)/.installed

# What was asked for (Python version, TORCH, TORCH_PIP, LOCK): rewritten only when it changes, so a
# new TORCH or PYTHON re-runs the install and an unchanged one does not.
$(VENV)/.install-spec: FORCE
	@spec="$$($(PYTHON) -c 'import platform; print(platform.python_version())') $(TORCH) $(TORCH_PIP) $(LOCK)"; \
	if [ ! -f $@ ] || [ "$$(cat $@)" != "$$spec" ]; then mkdir -p $(VENV) && echo "$$spec" > $@; fi

$(VENV)/.installed: $(VENV)/.install-spec pyproject.toml requirements.lock $(LOCK)
	@want=$$($(PYTHON) -c 'import sys; print(sys.version_info[:2])'); \
	if [ -x $(BIN)/python ] && [ "$$($(BIN)/python -c 'import sys; print(sys.version_info[:2])')" != "$$want" ]; then \
	  echo "$(VENV) has another Python version than $(PYTHON): rebuilding it"; \
	  spec=$$(cat $(VENV)/.install-spec); $(PYTHON) -m venv --clear $(VENV); echo "$$spec" > $(VENV)/.install-spec; fi; \
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH_PIP) "$(TORCH)"
	$(PIP) install --no-deps --ignore-requires-python -r $(LOCK) -e ".[dev]"
	$(BIN)/python -c "import torch; torch.ones(1).sum()"
	touch $@

demo: install
	. $(BIN)/activate && bash examples/ag_news/run.sh

demo-banking: install
	. $(BIN)/activate && HF_HUB_OFFLINE=1 python examples/banking_intents/run.py

demo-clickbait: install
	. $(BIN)/activate && HF_HUB_OFFLINE=1 python examples/clickbait/run.py

test: install
	. $(BIN)/activate && python -m pytest -q

lint: install
	. $(BIN)/activate && ruff check .

docs: install
	. $(BIN)/activate && mkdocs build --strict --site-dir $(DOCS_SITE)

bench: install
	. $(BIN)/activate && python benchmarks/bench_speed.py && python benchmarks/bench_quality.py \
		&& python benchmarks/bench_small_data.py && python benchmarks/update_docs.py

clean:
	rm -rf $(VENV) site build *.egg-info .pytest_cache

# Re-resolve requirements.lock and requirements-dev.lock for Python 3.11-3.13 (needs the package
# index); LOCK_ARGS=--upgrade for the newest allowed versions, --check to only check the wheels.
lock:
	TORCH="$(TORCH)" bash tools/lock.sh $(LOCK_ARGS)
