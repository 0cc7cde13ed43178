# The two commands of the README: `make demo` and `make test`.
# Both build a local virtualenv (.venv) with everything the project needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

SECRETS ?= secrets

.PHONY: demo test install clean secrets

$(BIN)/churnmon: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/churnmon

demo: install
	$(BIN)/churnmon demo

# Three test processes (pytest-xdist), each file's tests in one of them: the
# integration tests spend most of their time waiting on brokers and workers,
# so on 2 CPUs three at a time took the suite from ~13 min to ~5 min. Tests
# marked `solo` (the scale-out test: three workers and a reference worker)
# run afterwards, alone.
test: install
	$(BIN)/python -m pytest -n 3 --dist loadfile -m "not solo"
	$(BIN)/python -m pytest -m solo

# Random secrets for docker-compose.yml (kept if present): the lookup's bearer
# token and the model signing key. Readable inside the worker container;
# the directory itself is private.
secrets:
	@mkdir -p $(SECRETS) && chmod 700 $(SECRETS)
	@for name in lookup_token model_signing_key; do \
	  if [ ! -s $(SECRETS)/$$name ]; then \
	    $(PYTHON) -I -c 'import secrets; print(secrets.token_hex(32))' > $(SECRETS)/$$name && chmod 644 $(SECRETS)/$$name \
	    && echo "wrote $(SECRETS)/$$name"; \
	  fi; \
	done

clean:
	rm -rf $(VENV) churnmon-data .pytest_cache
