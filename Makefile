# `make run` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The real coding agents the tests drive (Claude Code, Codex CLI), pinned in tests/clients.
CLIENTS := $(VENV)/clients/.installed
PROTOS := $(wildcard protos/aibridge/v1/*.proto)
GENERATED := protos/aibridge/v1/.generated
# Debian's chromium, which the console's browser tests drive with Playwright.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run demo-upstream test test-faults bench protos lint constraints clean console-screenshots

run: $(INSTALLED) $(GENERATED)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start

# A stand-in for OpenAI and Anthropic on 127.0.0.1:9999, to try the gateway without a key.
demo-upstream: $(INSTALLED)
	$(BIN)/aibridge-mock-upstream

test: $(INSTALLED) $(GENERATED) $(CLIENTS) $(CHROMIUM)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault-injection suite alone (it is part of `make test` too).
test-faults: $(INSTALLED) $(GENERATED) $(CLIENTS) $(CHROMIUM)
	$(BIN)/python -m pytest -m faults $(PYTEST_ARGS)

# docs/console/*.png: every console page, over a stack with a day of calls.
console-screenshots: $(INSTALLED) $(GENERATED) $(CHROMIUM)
	$(BIN)/python -m tests.console_screenshots docs/console

# Benchmarks: not part of `make test` (see bench/).
bench: $(INSTALLED) $(GENERATED)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Regenerate the gRPC code from the .proto files (tests/test_protos.py fails when it is stale).
protos: $(INSTALLED)
	rm -f $(GENERATED)
	$(MAKE) $(GENERATED)

$(GENERATED): $(PROTOS) $(INSTALLED)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=protos --pyi_out=protos \
		--grpc_python_out=protos $(PROTOS)
	touch $@

# The versions in constraints.txt: the ones the tests last passed with.
$(INSTALLED): pyproject.toml setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# Refresh constraints.txt to the newest releases pyproject.toml allows (resolved in a
# scratch venv); then `make test` installs them, and the file is committed if it passes.
constraints:
	rm -rf $(VENV)-constraints
	$(PYTHON) -m venv $(VENV)-constraints
	$(VENV)-constraints/bin/python -m pip install --quiet --upgrade pip
	$(VENV)-constraints/bin/python -m pip install --quiet '.[dev]'
	{ echo "# The versions \`make test\` passed with; \`make constraints\` refreshes them."; \
	  $(VENV)-constraints/bin/python -m pip freeze --exclude aibridge; } > constraints.txt
	rm -rf $(VENV)-constraints

# Playwright's own browser download cannot reach its host here: Debian's package instead.
$(CHROMIUM):
	$(SUDO) apt-get install -y chromium || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

$(CLIENTS): tests/clients/package.json tests/clients/package-lock.json
	mkdir -p $(VENV)/clients
	cp tests/clients/package.json tests/clients/package-lock.json $(VENV)/clients/
	cd $(VENV)/clients && npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: $(INSTALLED) $(GENERATED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(GENERATED) protos/aibridge/v1/*_pb2*.py protos/aibridge/v1/*_pb2*.pyi
