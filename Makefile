# Two commands do everything on a fresh Debian machine with Python 3.11 (as root):
#   make demo   - the offline mini replication (corpus -> tiny HuBERT teacher -> probes -> results table)
#   make test   - the test suite
# Both first install what they need: Debian packages, a virtual environment in .venv, this package.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_OUT ?= result/demo
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages demo test bench mutation clean-demo

setup: system-packages $(STAMP)

system-packages:
	@if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v flite >/dev/null 2>&1 || [ ! -f /usr/share/trans/de-en ]; then \
	  echo ">> installing Debian packages espeak-ng, flite and trans-de-en"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq espeak-ng flite trans-de-en; \
	fi

$(STAMP): setup.py constraints.txt
	@echo ">> creating $(VENV) with $(PYTHON) and installing s3prl-colld (torch 2.8, s3prl 0.4.18, ...)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -c constraints.txt -e '.[test,export]'
	touch $(STAMP)

demo: setup
	$(PY) -m s3prl_colld.replicate --scale demo --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest -q tests

# Mutation testing of the objectives, the featurizer and the CTC heads against their unit tests (not part of
# `make test`: about 15 CPU minutes; configuration in setup.cfg [mutmut], results in docs/quality/mutation.md).
mutation: setup
	@$(PY) -c "import mutmut" 2>/dev/null || $(PY) -m pip install -q -e '.[test,export,mutation]'
	rm -rf mutants
	OMP_NUM_THREADS=1 nice -n 10 $(VENV)/bin/mutmut run --max-children 2
	$(VENV)/bin/mutmut results

bench: setup
	@for b in bench/*.py; do echo ">> $$b"; $(PY) $$b || exit 1; done

clean-demo:
	rm -rf $(DEMO_OUT)
