# The two commands of the README: `make demo` and `make test`. Everything else supports them.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-long lint bench bench-quick install chromium prom-tools nginx

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

## promtool and node_exporter for the Prometheus-export tests: Debian's packages unpacked into
## $(PROM_TOOLS), never installed (so no service starts); without apt those tests are skipped.
PROM_TOOLS := $(VENV)/prom-tools
prom-tools:
	@test -x $(PROM_TOOLS)/promtool -a -x $(PROM_TOOLS)/prometheus-node-exporter || { \
	  mkdir -p $(PROM_TOOLS) && dest=$$(cd $(PROM_TOOLS) && pwd) && tmp=$$(mktemp -d) && \
	  ( cd $$tmp && { apt-get download -qq prometheus prometheus-node-exporter 2>/dev/null || \
	    { apt-get update -qq && apt-get download -qq prometheus prometheus-node-exporter; }; } && \
	    for deb in *.deb; do dpkg-deb -x $$deb root; done && \
	    cp root/usr/bin/promtool root/usr/bin/prometheus-node-exporter $$dest/ ); \
	  rm -rf $$tmp; test -x $(PROM_TOOLS)/promtool || echo "promtool/node_exporter unavailable: their tests will be skipped"; }

## nginx for the test of the deploy/nginx front: Debian's package unpacked into $(NGINX_DIR),
## never installed (so no service starts); without apt that test is skipped.
NGINX_DIR := $(VENV)/nginx-bin
nginx:
	@test -x $(NGINX_DIR)/nginx || command -v nginx >/dev/null 2>&1 || { \
	  mkdir -p $(NGINX_DIR) && dest=$$(cd $(NGINX_DIR) && pwd) && tmp=$$(mktemp -d) && \
	  ( cd $$tmp && { apt-get download -qq nginx 2>/dev/null || \
	    { apt-get update -qq && apt-get download -qq nginx; }; } && \
	    dpkg-deb -x nginx_*.deb root && cp root/usr/sbin/nginx $$dest/ ); \
	  rm -rf $$tmp; test -x $(NGINX_DIR)/nginx || echo "nginx unavailable: the nginx front test will be skipped"; }

## Every test: unit, golden, property, real inotify, real supervisord, real headless Chromium.
test: $(STAMP) chromium prom-tools nginx
	$(PY) -m pytest -n 2 --dist loadfile \
	  --cov=kpi_publisher --cov=execution --cov=dashboard --cov-report=term:skip-covered

## The long fuzzing run (10,000 hypothesis examples per property).
test-long: $(STAMP)
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -m slow

## Lint, format check and types (mypy strict on the packages, relaxed on tests: pyproject.toml).
LINT_PATHS := kpi_publisher execution dashboard bench tests
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

## The benchmarks run from the checkout (bench/ is not part of the installed package).
bench: $(STAMP)
	$(PY) -m bench

bench-quick: $(STAMP)
	$(PY) -m bench --quick
