# Two commands for a newcomer:  make demo   and   make test
# Both create .venv (Python >= 3.11) with the ocaudit console script in it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo dashboard test lint venv browser bench-quick clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing ocaudit with its dependencies (first time: a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)
	@echo "==> $(VENV) ready: $(BIN)/ocaudit"

venv: $(STAMP)

demo: $(STAMP)
	@echo "==> running the end-to-end demo on sample_data/ (ingest -> audit -> report)"
	$(BIN)/ocaudit demo --out demo_out

# the interactive dashboard on the demo database (run `make demo` first); Ctrl+C stops it
dashboard: $(STAMP)
	@test -f demo_out/ocaudit.duckdb || { echo "==> no demo_out/ocaudit.duckdb yet: run make demo first"; exit 2; }
	$(BIN)/ocaudit dashboard --db demo_out/ocaudit.duckdb $(if $(PORT),--port $(PORT))

browser:
	@bash scripts/ensure_chromium.sh || echo "==> Chromium not available: browser tests will be skipped with a reason"

test: $(STAMP) browser
	@echo "==> running ruff (lint and format check) and the test suite (pytest)"
	$(BIN)/ruff check toolkit tools tests benchmarks
	$(BIN)/ruff format --check toolkit tools tests benchmarks
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check toolkit tools tests benchmarks
	$(BIN)/ruff format --check toolkit tools tests benchmarks

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run.py --sessions 100000 --repeat 3

clean:
	rm -rf $(VENV) demo_out .pytest_cache
