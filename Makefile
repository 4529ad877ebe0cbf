# The two commands of the README, and the pieces they are made of.
# `make run`  installs everything and serves on 127.0.0.1:8080 (embedded defaults).
# `make test` installs everything and runs lint, type checks and the whole test suite.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install axe plugin-example run test coverage lint typecheck pytest openapi architecture card-rates drug-terminology \
	drug-coverage format clean bench bench-load bench-stages bench-population bench-smart-view bench-workbench soak topology fhirpath-conformance

$(BIN)/.installed: pyproject.toml hatch_build.py cds_service/_jsondepth.c cds_service/_fhirscan.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# axe-core (npm), which the accessibility test runs in chromium on the clinician view.
AXE_VERSION := 4.14.1
AXE := .cache/npm/node_modules/axe-core/axe.min.js
$(AXE):
	npm install --silent --no-audit --no-fund --no-save --prefix .cache/npm axe-core@$(AXE_VERSION)

axe: $(AXE)

# The workbench (/workbench) signs nobody in locally, and tries rules on the shared fixtures'
# 55 Synthea patients when they are beside this checkout.
SAMPLE_POPULATION := $(wildcard ../shared/fixtures/bulk-ndjson/synthea-55-patients)
run: install
	CDS_ENV=development CDS_AUTH=disabled CDS_WORKBENCH_AUTH=disabled \
	$(if $(SAMPLE_POPULATION),CDS_WORKBENCH_POPULATION=$(SAMPLE_POPULATION)) \
	$(BIN)/cds-service serve --host 127.0.0.1 --port 8080

lint: install
	$(BIN)/ruff check cds_service tests bench deploy scripts examples
	$(BIN)/ruff format --check cds_service tests bench deploy scripts examples
	$(BIN)/cds-service rules lint rules

typecheck: install
	$(BIN)/mypy

# `make coverage` runs the same suite measuring the coverage of cds_service (files fully covered
# are left out; the TOTAL line is the figure to watch; no threshold fails it). `make test` does
# not: the tracer more than doubles the CPU-heavy modules (the FHIRPath differential test: 2 min
# 13 s without, 5 min 13 s with, on a 2-core machine) and CI must stay under 20 minutes.
# The suite runs on PYTEST_WORKERS processes (pytest-xdist; `auto`: one per CPU), spread by file
# (`--dist loadfile`): a module's tests, which may share a Redis database of their own, never run
# at the same time. Every process logs into TEST_LOGS, and the log scan (tests/test_logs_clean.py)
# runs once more when all of them have finished, over the whole run's lines.
PYTEST_WORKERS ?= auto
PYTEST_ARGS ?=
TEST_LOGS := .cache/test-logs
LOG_SCAN := tests/test_logs_clean.py::test_session_logs_hold_no_phi_or_tokens
pytest: install axe
	rm -rf $(TEST_LOGS)
	CDS_TEST_LOG_DIR=$(CURDIR)/$(TEST_LOGS) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) \
		--dist loadfile $(PYTEST_ARGS) --deselect $(LOG_SCAN)
	CDS_TEST_LOG_DIR=$(CURDIR)/$(TEST_LOGS) $(BIN)/python -m pytest -q $(LOG_SCAN)

test: lint typecheck pytest plugin-example

coverage:
	$(MAKE) pytest PYTEST_ARGS="--cov --cov-report=term-missing"

# The example plugin (examples/cds-plugin-example) installed beside cds-service in its own
# environment, and its tests: the main suite never sees a plugin.
PLUGIN_VENV ?= .venv-plugin
$(PLUGIN_VENV)/.installed: pyproject.toml examples/cds-plugin-example/pyproject.toml
	$(PYTHON) -m venv $(PLUGIN_VENV)
	$(PLUGIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PLUGIN_VENV)/bin/python -m pip install --quiet -e '.[dev]' -e examples/cds-plugin-example
	touch $@

plugin-example: $(PLUGIN_VENV)/.installed
	cd examples/cds-plugin-example && ../../$(PLUGIN_VENV)/bin/python -m pytest -q -p no:cacheprovider tests

openapi: install
	$(BIN)/cds-service openapi
	$(BIN)/cds-service rules schema
	$(BIN)/cds-service rules simulate --schema > openapi/simulation-report.schema.json

# docs/architecture.md: the layers and the imports between packages (tests/test_architecture.py).
architecture: install
	$(BIN)/python scripts/architecture.py

# The HL7 FHIRPath R4 suite against the rules' evaluator: docs/fhirpath-conformance.md.
fhirpath-conformance: install
	$(BIN)/python -m tests.fhirpath_suite.suite --write

# rules/README.md's card-rate table: the Synthea population replayed through the rule services
# (tests/population/test_card_rates.py checks the table is current and the 15 % gate).
card-rates: install
	$(BIN)/python scripts/card_rates.py

# The drug value sets and rules/_terminology/rxnorm-ingredients.tsv, rebuilt from local copies of
# the public repositories scripts/drug_sources.py names (nothing is downloaded).
MIRRORS ?= /work/.mirror
drug-terminology: install
	$(BIN)/python -m scripts.drug_terminology --mirrors $(MIRRORS)

# docs/drug-coverage.md: the fixture drugs each drug value set covers (tests/terminology/
# test_drug_coverage.py fails on a missed code or a stale report).
drug-coverage: install
	$(BIN)/python -m scripts.drug_coverage

topology: install
	$(BIN)/python deploy/topology.py --replicas 2 --tenants deploy/tenants.example.yaml

soak: install
	$(BIN)/python deploy/soak.py --seconds 600

bench-load: install
	$(BIN)/python -m bench.load

# A hook call's CPU stage by stage, in-process (docs/benchmarks.md).
bench-stages: install
	$(BIN)/python -m bench.stages

# The population engine at 10k and 100k generated patients, 1 and 2 workers (docs/benchmarks.md).
bench-population: install
	$(BIN)/python -m bench.population --write

# The clinician view's render after the SMART callback, with a 50 ms FHIR server (docs/benchmarks.md).
bench-smart-view: install
	$(BIN)/python -m bench.smart_view --write

# Hook latency with and without an author working in the playground (docs/benchmarks.md).
bench-workbench: install
	$(BIN)/python -m bench.workbench --write

bench: install
	$(BIN)/python -m bench.rules_engine
	$(BIN)/python -m bench.rules_engine --cold-scores

format: install
	$(BIN)/ruff check --fix cds_service tests bench deploy scripts
	$(BIN)/ruff format cds_service tests bench deploy scripts

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .coverage .hypothesis
