# make demo: set up, build a zoo model for both backends, run a forward pass in each.
# make test: set up, run the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
ARCHC := $(VENV)/bin/archc
SPECS := $(shell find specs -name '*.yaml' | sort)

.PHONY: setup demo test test-slow bench generated lint clean

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

test: setup
	$(PY) -m pytest -n 2 -q

# The slow-marked tests only (deep Keras models, torch.compile of every zoo model).
test-slow: setup
	$(PY) -m pytest -n 2 -q -m slow

# Compiler speed and scaling, generated vs reference runtime; prints tables with ratios.
bench: setup
	$(PY) bench/run.py

# Regenerate generated/ after changing specs, emitters or templates.
generated: setup
	@for spec in $(SPECS); do \
		$(ARCHC) build $$spec --backend torch || exit 1; \
		$(ARCHC) build $$spec --backend keras || exit 1; \
	done

lint: setup
	$(VENV)/bin/ruff check archc tests scripts generated bench
	$(VENV)/bin/ruff format --check generated

clean:
	rm -rf build dist .pytest_cache
