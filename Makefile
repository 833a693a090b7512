# Two commands matter (see README): `make up` runs the main job on the local stack,
# `make test` runs every check. Everything else here supports those two.
SHELL := /bin/bash
PYTHON ?= python3
DEV_VENV := .venv
RUN_VENV := venv
STATE := .state

.PHONY: test up preview down bench lint clean require-pulumi run-venv

# Test environment: created when missing, reinstalled only when the pins change.
$(DEV_VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(DEV_VENV)/bin/python || $(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The program's own environment: the Pulumi CLI uses venv/ (Pulumi.yaml says so).
$(RUN_VENV)/.installed: requirements.txt
	test -x $(RUN_VENV)/bin/python || $(PYTHON) -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

test: $(DEV_VENV)/.installed
	$(DEV_VENV)/bin/python -m pytest
	$(DEV_VENV)/bin/ruff check components emulators tests scripts __main__.py
	$(DEV_VENV)/bin/mypy components

lint: $(DEV_VENV)/.installed
	$(DEV_VENV)/bin/ruff check components emulators tests scripts __main__.py
	$(DEV_VENV)/bin/mypy components

# Without the Pulumi CLI, stop before installing anything, with the one sentence that helps.
# require-pulumi is the only prerequisite, and venv/ is installed from the recipe, so the
# check comes strictly first even with `make -k` or `make -j`.
up: require-pulumi
	@$(MAKE) --no-print-directory run-venv
	@scripts/local-stack.sh up

preview: require-pulumi
	@$(MAKE) --no-print-directory run-venv
	@scripts/local-stack.sh preview

# venv/ up to date, silently when nothing needs doing (for the recipes of up and preview).
run-venv: $(RUN_VENV)/.installed
	@:

require-pulumi:
	@command -v pulumi >/dev/null 2>&1 || { echo "The Pulumi CLI is not installed: install it (https://www.pulumi.com/docs/iac/download-install/), make sure \`pulumi\` is on PATH, then run \`make $(MAKECMDGOALS)\` again." >&2; exit 1; }

down:
	@scripts/local-stack.sh down

bench: $(DEV_VENV)/.installed
	$(DEV_VENV)/bin/python -m tests.bench

clean: down
	rm -rf $(STATE) $(DEV_VENV) $(RUN_VENV)
