# `make run` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed.stamp

.PHONY: run test simulate lint bench bench-quick bench-compare clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

PORT ?= 8080

run: $(STAMP)  ## the demo on the embedded sample data (http://127.0.0.1:$(PORT); make run PORT=9000)
	$(BIN)/hotreload demo --port $(PORT)

test: $(STAMP)  ## unit, integration and property tests, every simulator scenario, bench smoke
	$(BIN)/python -m pytest -n 2 --dist load tests benchmarks --benchmark-disable

simulate: $(STAMP)  ## every simulator scenario, with the report table
	$(BIN)/hotreload simulate

lint: $(STAMP)
	$(BIN)/ruff check src tests simulator benchmarks
	$(BIN)/mypy src

bench: $(STAMP)  ## full benchmarks (1k, 5k, 50k records); writes docs/img/ chart
	$(BIN)/python -m pytest benchmarks --benchmark-json=.benchmarks/latest.json -p no:xdist
	$(BIN)/python benchmarks/report.py .benchmarks/latest.json

bench-quick: $(STAMP)  ## bench-compare in a few minutes: 5,000 records, short rounds (BASE=<commit> as below)
	$(BIN)/python benchmarks/compare.py --quick $(if $(BASE),--base $(BASE))

bench-compare: $(STAMP)  ## every figure readers feel, this tree against BASE (default: benchmarks/BASE); fails if one is >10% worse
	$(BIN)/python benchmarks/compare.py $(if $(BASE),--base $(BASE)) $(if $(RECORDS),--records $(RECORDS)) \
		$(if $(ROUNDS),--rounds $(ROUNDS))

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .benchmarks .bench-cache .hotreload-demo
