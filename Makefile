# The two commands: `make serve` (set up + run the example) and `make test` (set up + all checks).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
EXAMPLE_MODELS := examples/churn/models/churn/v1/model.joblib
CONFIG ?= examples/churn/modelrouter.yaml

.PHONY: serve test lint typecheck unit venv models bench clean traffic prometheus chromium

# The admin API needs a bearer token; the example uses this one unless you export your own
# (only for the example's targets: the tests set their own).
serve traffic: export MODELROUTER_ADMIN_TOKEN ?= dev-token

serve: $(STAMP) $(EXAMPLE_MODELS)
	@echo "admin API token: $$MODELROUTER_ADMIN_TOKEN (export MODELROUTER_ADMIN_TOKEN to change it)"
	@echo "dashboard: http://127.0.0.1:8080/ui"
	$(BIN)/modelrouter serve $(CONFIG)

test: $(STAMP) $(EXAMPLE_MODELS) chromium lint typecheck
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v prometheus >/dev/null || $(MAKE) prometheus
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

models: $(EXAMPLE_MODELS)

# The Prometheus server the PromQL rollout checks are tested against (Debian package; root).
prometheus:
	command -v prometheus >/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus)

# The browser the dashboard tests drive through Playwright (Debian package; root). Playwright's
# own browser download does not work here: the tests launch /usr/bin/chromium.
chromium:
	test -x /usr/bin/chromium || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# Requests and simulated feedback for `make serve`, so its rollout has something to judge.
traffic: $(STAMP) $(EXAMPLE_MODELS)
	$(BIN)/modelrouter traffic --url http://127.0.0.1:8080 --rate 20 --rows 8

$(EXAMPLE_MODELS): examples/build_models.py $(STAMP)
	$(BIN)/python examples/build_models.py

bench: $(STAMP) $(EXAMPLE_MODELS)
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/routing.py

clean:
	rm -rf $(VENV) examples/churn/models .pytest_cache .mypy_cache .ruff_cache
