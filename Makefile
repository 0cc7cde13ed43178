# The two commands of the README: `make demo` and `make test`.
# Both build a local virtualenv (.venv) with everything the project needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/churnmon: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/churnmon

demo: install
	$(BIN)/churnmon demo

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) churnmon-data .pytest_cache
