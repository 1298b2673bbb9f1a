# `make run` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed.stamp

.PHONY: run test test-lowest simulate lint bench bench-quick bench-compare clean

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

LOWEST := .venv-lowest

test-lowest:  ## the suite against the lowest release of every runtime range in pyproject.toml (its own venv)
	test -x $(LOWEST)/bin/python || $(PYTHON) -m venv $(LOWEST)
	$(PYTHON) -c "import re, tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
		print(*(re.sub(r'>=([^,]+),.*', r'==\1', d.replace(' ', '')) for d in deps), sep='\n')" > $(LOWEST)/lowest.txt
	$(LOWEST)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST)/bin/python -m pip install --quiet -c $(LOWEST)/lowest.txt -e '.[dev]'
	$(LOWEST)/bin/python -m pip check
	$(LOWEST)/bin/python -m pytest -n 2 --dist load tests --benchmark-disable -m 'not slow'

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
	rm -rf $(VENV) $(LOWEST) .pytest_cache .hypothesis .benchmarks .bench-cache .hotreload-demo
