# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv when it is missing and installs the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit ruletests coverage bench fuzz systemd-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/holdd demo

lint: $(STAMP)
	$(BIN)/ruff check daemon tests bench fuzz systemd tools
	$(BIN)/ruff format --check daemon tests bench fuzz systemd tools
	$(BIN)/lint-imports --no-logo

typecheck: $(STAMP)
	$(BIN)/mypy --strict daemon/holdd
	$(BIN)/mypy --strict tests tools

# pytest exits 5 when it collected no test; make treats every non-zero
# exit as a failure, so an empty run never passes.
# Coverage is measured (pyproject.toml [tool.coverage.run]; `patch = subprocess`
# follows the `holdd run` and `holdd` subprocesses) and printed, never judged.
# tests/chaos runs untraced: its daemons must keep up with a stream of calls,
# and the tracer's slowdown would turn that into a coverage artefact.
unit: $(STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest -q --ignore=tests/chaos
	$(BIN)/python -m pytest -q tests/chaos

# The shipped rule test files, exactly as an operator runs them.
ruletests: $(STAMP)
	$(BIN)/coverage run -m holdd test config/tests/*.toml

coverage: $(STAMP)
	$(BIN)/coverage combine -q
	$(BIN)/python tools/coverage_summary.py

test: lint typecheck unit ruletests coverage

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Not part of make test: every Hypothesis property with the "fuzz" profile
# (tests/conftest.py: 50x the examples, a new seed each run), then
# coverage-guided fuzzing of the notification parser.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -m hypothesis --timeout=1800 --hypothesis-show-statistics
	$(BIN)/python -m pip install --quiet atheris || echo "atheris not installable: fuzz/fuzz_events.py falls back to random mutation"
	$(BIN)/python fuzz/fuzz_events.py -atheris_runs=100000

# holdd.service as written, under a real systemd (root, systemd-nspawn; not in CI).
systemd-check:
	test -x /opt/holdd/venv/bin/holdd || { python3 -m venv /opt/holdd/venv && /opt/holdd/venv/bin/pip install --quiet .; }
	mountpoint -q /run/systemd/nspawn || { mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn; }
	/opt/holdd/venv/bin/python systemd/check/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .coverage .coverage.*
