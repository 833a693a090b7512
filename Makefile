# Two commands matter (see README): `make up` runs the main job on the local stack,
# `make test` runs every check. Everything else here supports those two.
SHELL := /bin/bash
PYTHON ?= python3
DEV_VENV := .venv
RUN_VENV := venv
STATE := .state

.PHONY: test up preview down bench lint clean run-venv audit browser audit-screenshot

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

# venv/ first (the CLI installer is part of the pinned SDK), then the CLI: the one on PATH, or
# the version matching the SDK installed under .state/pulumi/ (scripts/pulumi_cli.py).
up: run-venv
	@scripts/local-stack.sh up

preview: run-venv
	@scripts/local-stack.sh preview

# The read-only trust audit (README, "Auditing trust"); no Pulumi CLI needed. Without STACKS
# it starts the local stack's emulator (`make down` stops it) and audits the local stack.
#   make audit                      make audit AUDIT_ARGS="--html audit.html"
#   make audit STACKS="stacks/Pulumi.prod.yaml" AUDIT_ARGS=--json
audit: run-venv
	@scripts/local-stack.sh audit $(STACKS) $(AUDIT_ARGS)

# Debian's Chromium, for the HTML report's browser test (skipped without it) and the screenshot.
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# The README screenshot (docs/audit-report.png), rendered from the demo world in tests/audit.
audit-screenshot: $(DEV_VENV)/.installed browser
	$(DEV_VENV)/bin/python -m tests.audit.demo docs/audit-report.png

# venv/ up to date, silently when nothing needs doing (for the recipes of up and preview).
run-venv: $(RUN_VENV)/.installed
	@:

down:
	@scripts/local-stack.sh down

bench: $(DEV_VENV)/.installed
	$(DEV_VENV)/bin/python -m tests.bench

clean: down
	rm -rf $(STATE) $(DEV_VENV) $(RUN_VENV)
