# Two entry points on a fresh machine (see README): `make run` and `make test`.
# Both create .venv, install the CPU wheel torch==2.13.0 first (so nothing pulls CUDA builds),
# then attnbench itself. GPU users: install your CUDA torch into the venv before `make`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Use the offline copy of the corpora beside the repository when there is one; otherwise
# attnbench downloads them from upstream (with SHA-256 checks) into ~/.cache/attnbench.
SHARED_DATA := $(wildcard $(abspath $(CURDIR)/../shared/data))
ifneq ($(SHARED_DATA),)
export ATTNBENCH_DATA_DIR ?= $(SHARED_DATA)
endif
export DO_NOT_TRACK ?= true
export MLFLOW_DISABLE_TELEMETRY ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install run test lint clean tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[orchestration,dev,triton]"
	$(BIN)/python -m pip show torch | head -2
	touch $@

install: $(VENV)/.installed

## The main job on embedded defaults: the whole benchmark flow on the `quick` preset
## (Prefect ephemeral, MLflow SQLite and Optuna journal in ./attnbench-runs, report in ./reports).
run: install
	$(BIN)/attnbench run --preset quick

# Debian's docker-compose validates docker/compose.yaml offline (tests/test_docker.py) and
# Debian's chromium opens the HTML report (tests/test_flows.py); installed here when missing
# and possible (root), otherwise those tests say what to install.
tools:
	@command -v docker-compose >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q docker-compose >/dev/null; } || true
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q chromium >/dev/null; } || true

test: install tools
	$(BIN)/ruff check attnbench tests flows reports
	$(BIN)/python -m pytest -q --timeout=600 --durations=15

lint: install
	$(BIN)/ruff check attnbench tests flows reports
	$(BIN)/ruff format --check attnbench tests flows reports

clean:
	rm -rf $(VENV) attnbench-runs .pytest_cache
