# The two commands of the README: `make demo` and `make test`. Everything else supports them.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-long lint bench bench-quick install chromium

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dashboard,prom,dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the whole system: demo executor + publisher + dashboard (prints the URL; Ctrl-C stops all).
demo: $(STAMP)
	$(VENV)/bin/hedge-kpi demo

## Browser tests need Debian's chromium; as root this installs it when it is missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium) || echo "chromium not installed: browser tests will be skipped"; }

## Every test: unit, golden, property, real inotify, real supervisord, real headless Chromium.
test: $(STAMP) chromium
	$(PY) -m pytest -n 2 --dist loadfile

## The long fuzzing run (10,000 hypothesis examples per property).
test-long: $(STAMP)
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check kpi_publisher execution dashboard bench tests
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/hedge-kpi bench

bench-quick: $(STAMP)
	$(VENV)/bin/hedge-kpi bench --quick
