# `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A CPU build of PyTorch: the exact release first (a local wheel where one is offered),
# then PyTorch's own CPU index, so a plain `torch` never pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# Real pretrained GANs shipped as MIT wheels; only their weight files are read.
MODEL_WHEELS := gan-face-generate==1.1.1 omniart-eye-generator==0.1 random-face==2021.7.21.1

.PHONY: install demo test bench evaluate lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_PIN)" \
		|| $(PY) -m pip install -q --index-url $(TORCH_CPU_INDEX) "torch>=2.2,<3"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps $(MODEL_WHEELS)
	touch $@

demo: install
	$(VENV)/bin/lowrankgan demo --out outputs/demo

test: install
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest tests

bench: install
	$(PY) bench/run.py --out docs/benchmarks.md

# The README's results: every method on both built-in GANs, at equal change inside the
# region (the headline) and at equal strength. Resumable: an interrupted `make evaluate`
# continues where it stopped.
# About 5 + 5 minutes on 2 CPU cores (each change is searched on the image and 5 others).
EVAL := $(VENV)/bin/lowrankgan evaluate --strengths 1,2,3,5 --changes 0.05,0.1,0.15
evaluate: install
	$(EVAL) --seeds 0-19 --model dcgan-faces --regions eyes,mouth,nose --out outputs/eval/dcgan-faces
	$(EVAL) --seeds 0-4 --model omniart-eyes --regions iris,lids --out outputs/eval/omniart-eyes
	mkdir -p docs/evaluation
	for m in dcgan-faces omniart-eyes; do \
		cp outputs/eval/$$m/summary.md docs/evaluation/$$m.md; \
		for f in outputs/eval/$$m/plots/*locality.png; do \
			cp $$f docs/evaluation/$$m-$$(basename $$f); \
		done; \
	done
	cp outputs/eval/dcgan-faces/plots/eyes_strip.png docs/evaluation/dcgan-faces-eyes_strip.png
	cp outputs/eval/omniart-eyes/plots/iris_strip.png docs/evaluation/omniart-eyes-iris_strip.png

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) outputs build *.egg-info src/*.egg-info
