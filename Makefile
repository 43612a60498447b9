# xdsbus: make run | make test | make fuzz | make bench | make lint
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_OUT := libs/xdsbus/src
PROTO_FILES := $(shell find protos -name '*.proto')
PACKAGES := -e libs/xdsbus -e libs/xdsbus-dev -e services/builder -e services/watch-file -e services/edge -e services/watch-k8s -e services/watch-consul -e services/watch-eureka -e services/watch-nacos -e services/console
PYTEST_ARGS ?=
# Test processes: the suite spends most of its time waiting on nats-server, Envoy and the services, so two
# workers halve the wall time on a 2-core machine; worksteal balances the long end-to-end tests.
TEST_WORKERS ?= 2
BENCH ?=
# py-spy flame graphs beside each result (bench/flame.py); `make bench FLAME=` runs without sampling.
FLAME ?= --flame

.PHONY: install protos run test test-fast fuzz bench bench-table conformance chaos lint fmt clean

install: $(STAMP) protos

$(STAMP): requirements-dev.txt libs/xdsbus/pyproject.toml libs/xdsbus-dev/pyproject.toml $(wildcard services/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt $(PACKAGES)
	touch $(STAMP)

protos: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) $(PROTO_FILES)

run: install
	$(BIN)/xdsbus up --config-dir examples

test: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test-fast: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow" $(PYTEST_ARGS)

# tests/fuzz at FUZZ_EXAMPLES random examples per test (make test runs them at a small, fixed budget).
FUZZ_EXAMPLES ?= 5000
fuzz: install
	XDSBUS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -m fuzz tests/fuzz $(PYTEST_ARGS)

# The benchmarks, then bench/README.md's "Latest figures" from their results (also when one failed).
bench: install
	$(BIN)/python -m bench $(FLAME) $(BENCH); status=$$?; $(BIN)/python -m bench.table && exit $$status

bench-table: install
	$(BIN)/python -m bench.table

# Gateway API conformance (HTTP traffic tests) -> bench/results/gateway_api_conformance.json
conformance: install
	$(BIN)/python -m bench.gateway_api_conformance $(CONFORMANCE)

# The stack on a 3-node NATS cluster through each fault (docs/operating-on-a-cluster.md) -> bench/results/chaos.json
chaos: install
	$(BIN)/python -m bench.chaos

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .data bench/results/*.json bench/results/*.svg
	find . -name __pycache__ -prune -exec rm -rf {} +
