# The two commands: `make serve` (set up + run the example) and `make test` (set up + all checks).
# `make serve` installs only what the example needs (`pip install -e .`: scikit-learn, SQLite);
# `make test` adds every runtime, store and tool the tests use (`.[dev]`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
SERVE_STAMP := $(VENV)/.installed-serve
PORT ?= 8080
EXAMPLE_MODELS := examples/churn/models/churn/v1/model.joblib
CONFIG ?= examples/churn/modelrouter.yaml

.PHONY: peers serve test lint typecheck unit venv models bench clean traffic prometheus proto kubectl chromium haproxy h2load

# The admin API needs a bearer token; the example uses this one unless you export your own
# (only for the example's targets: the tests set their own).
serve traffic: export MODELROUTER_ADMIN_TOKEN ?= dev-token

serve: $(SERVE_STAMP) $(EXAMPLE_MODELS)
	@echo "admin API token: $$MODELROUTER_ADMIN_TOKEN (export MODELROUTER_ADMIN_TOKEN to change it)"
	@echo "dashboard: http://127.0.0.1:$(PORT)/ui"
	$(BIN)/modelrouter serve $(CONFIG) --port $(PORT)

test: $(STAMP) $(EXAMPLE_MODELS) chromium lint typecheck peers
	$(BIN)/python -m pytest -q

# The peers' own virtualenvs (tritonclient, KServe, MLServer) in bench/.peers, made once before
# the suite so that no test's timeout pays for building them (PyPI access needed the first time).
peers: $(STAMP)
	$(BIN)/python tests/peers.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

venv: $(STAMP)

# the development set includes the serving set: both stamps are then up to date
$(STAMP): pyproject.toml
	@command -v prometheus >/dev/null || $(MAKE) prometheus
	@command -v kubectl >/dev/null || $(MAKE) kubectl
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(SERVE_STAMP)

$(SERVE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

models: $(EXAMPLE_MODELS)

# The Prometheus server the PromQL rollout checks are tested against (Debian package; root).
prometheus:
	command -v prometheus >/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus)

# The peer bench/proxy.py measures modelrouter's proxy hop against (Debian package; root).
haproxy:
	command -v haproxy >/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy)

# The load generator of the gRPC rows of bench/serving.py and bench/proxy.py (and of REST with
# --h1): nghttp2's h2load, a C client light on the cores it shares (Debian package; root).
h2load:
	command -v h2load >/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nghttp2-client)

# The gRPC messages: modelrouter's own inference.proto compiled to the descriptor set it loads
# (checked in, so a fresh clone needs no compiler; tests/unit/protocol/test_grpc_proto.py
# fails when the two disagree).
PROTO_DIR := src/modelrouter/protocol/proto
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I$(PROTO_DIR) \
	  --descriptor_set_out=$(PROTO_DIR)/inference.binpb inference.proto

# The browser the dashboard tests drive through Playwright (Debian package; root). Playwright's
# own browser download does not work here: the tests launch /usr/bin/chromium.
chromium:
	test -x /usr/bin/chromium || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# `kubectl kustomize`, which the export tests render the manifests with (no cluster needed;
# Debian package; root).
kubectl:
	command -v kubectl >/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y kubectl)

# Requests and simulated feedback for `make serve` (same PORT), so its rollout has something
# to judge.
traffic: $(SERVE_STAMP) $(EXAMPLE_MODELS)
	$(BIN)/modelrouter traffic --url http://127.0.0.1:$(PORT) --rate 20 --rows 8

# order-only: rebuilt when the script changes, not after every reinstall
$(EXAMPLE_MODELS): examples/build_models.py | $(SERVE_STAMP)
	$(BIN)/python examples/build_models.py

bench: $(STAMP) $(EXAMPLE_MODELS)
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/routing.py

clean:
	rm -rf $(VENV) examples/churn/models .pytest_cache .mypy_cache .ruff_cache
