# make demo: set up, build a zoo model for both backends, run a forward pass in each.
# make test: set up (both environments), run the whole suite, torchvision and timm parity included.
# make test-torchvision: only the torchvision and timm parity tests, in their own venv
#   (torchvision is not a dev dependency: it needs torch 2.14.1, the dev venv pins 2.13.0).
VENV ?= .venv
PY := $(VENV)/bin/python
ARCHC := $(VENV)/bin/archc

TVENV ?= .tvenv

.PHONY: setup demo test test-slow test-torchvision bench bench-torchvision generated diagrams lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

demo: setup
	$(ARCHC) check specs/densenet121.yaml
	$(ARCHC) build specs/densenet121.yaml --backend torch -o build/demo/densenet121_torch.py
	$(ARCHC) build specs/densenet121.yaml --backend keras -o build/demo/densenet121_keras.py
	$(PY) scripts/demo.py build/demo/densenet121_torch.py build/demo/densenet121_keras.py

# The parity tests need torchvision and timm: they run in .tvenv only, and the main run leaves
# them out (in CI, CI=true, a module whose dependency is missing fails: tests/conftest.py need).
# --durations=15: each run (CI's too) ends with its slowest tests, where the suites' time goes.
PARITY := tests/test_torchvision.py tests/test_timm.py tests/test_import.py
PYTEST := $(PY) -m pytest -n 2 -q --durations=15 $(addprefix --ignore=,$(PARITY))
PARITY_PYTEST := PYTHONPATH=$(CURDIR) $(TVENV)/bin/python -m pytest -n 2 -q --durations=15 -p no:cacheprovider $(PARITY)

# test and test-slow run both environments' tests even when the first run fails, and fail if
# either did. pytest's exit 5 (no test ran) fails too: every selection here holds tests, so an
# empty one is a broken environment or selection, not a pass.
test: setup $(TVENV)/.installed
	status=0; $(PYTEST) || status=1; $(PARITY_PYTEST) || status=1; exit $$status

$(TVENV)/.installed: requirements-tvenv.txt
	python3 -m venv $(TVENV)
	$(TVENV)/bin/python -m pip install --quiet -r requirements-tvenv.txt
	touch $@

test-torchvision: $(TVENV)/.installed
	$(PARITY_PYTEST)

# The slow-marked tests only: verify, export, parity with torchvision and full-size forward passes
# of the family members that are not their family's representative (tests/conftest.py FAMILIES),
# deep Keras models, torch.compile (Inductor), the deploy check of every zoo spec in PyTorch and
# Keras, and bench/import_coverage.py's timm list (issue 22).
test-slow: setup $(TVENV)/.installed
	status=0; $(PYTEST) -m slow || status=1; $(PARITY_PYTEST) -m slow || status=1; exit $$status

# Compiler speed and scaling, generated vs reference runtime; prints tables with ratios.
bench: setup
	$(PY) bench/run.py

# aten operators per training step, generated PyTorch vs torchvision, in .tvenv (torch + torchvision only);
# BENCH_MODELS="mobilenet_v2 ..." to choose (default: mobilenet_v2 efficientnet_b0 convnext_tiny regnet_y_400mf).
bench-torchvision: $(TVENV)/.installed
	PYTHONPATH=$(CURDIR) $(TVENV)/bin/python bench/torchvision_ops.py $(BENCH_MODELS)

# Regenerate generated/ and the editor schema after changing specs, the spec models, emitters or templates.
generated: setup
	$(ARCHC) build specs --backend torch,keras
	$(ARCHC) schema -o docs/archc.schema.json

# Redraw the README's diagrams (needs Graphviz: apt-get install graphviz).
diagrams: setup
	$(ARCHC) graph specs/resnet50.yaml -o docs/resnet50.svg
	$(ARCHC) graph specs/densenet121.yaml -o docs/densenet121.svg

lint: setup
	$(VENV)/bin/ruff check archc tests scripts generated bench
	$(VENV)/bin/ruff format --check generated

clean:
	rm -rf build dist .pytest_cache
