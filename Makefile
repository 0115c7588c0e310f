# `make run`: the main job on the embedded default data. `make test`: the test suite.
# Both create and use .venv in the repo root, installing the exact pins of requirements/dev.txt (= lock.txt + dev tools).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.armvision-installed
PYTEST_ARGS ?=

.PHONY: run test install bench clean

$(STAMP): pyproject.toml requirements/lock.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/armvision demo --output runs/demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/armvision bench scan

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info
