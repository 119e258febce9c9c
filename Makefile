# auditrail: `make demo` runs the main job on the embedded default, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

# Reinstall only when the project's metadata changed; the install is editable, so code edits need nothing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python examples/assistant/demo.py

test: install lint
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check instrumentation storage tests examples benchmarks

bench: install
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) .auditrail .pytest_cache
