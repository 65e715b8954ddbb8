# Two commands do everything: `make report` (the pipeline) and `make test` (the test suite).
# Each creates the virtual environment .venv and installs the project into it when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= smoke
DATA ?=
OUT ?=

.PHONY: venv report test lab notebooks benchmark clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The main job: run every notebook with papermill (synthetic data unless DATA=path).
report: venv
	$(PY) -m fer_utils pipeline --profile $(PROFILE) $(if $(DATA),--data $(DATA)) $(if $(OUT),--out $(OUT))

# pytest for fer_utils, nbval for every notebook, one papermill smoke run of the pipeline.
test: venv
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest

lab: venv
	$(VENV)/bin/jupyter lab notebooks

# Re-execute the committed notebooks in place with their default parameters (what nbval compares).
notebooks: venv
	rm -rf reports/scratch
	cd notebooks && for nb in [0-9]*.ipynb; do TF_CPP_MIN_LOG_LEVEL=2 ../$(PY) -m papermill --cwd . $$nb $$nb || exit 1; done

benchmark: venv
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/load_speed.py

clean:
	rm -rf reports/scratch reports/*-smoke reports/*-demo .pytest_cache
