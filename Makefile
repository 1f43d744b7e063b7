# pathcnn: `make repro` runs the pipeline, `make test` runs the tests; both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 2
PGDATA := $(abspath .postgres)
PGPORT ?= 54329
MLFLOW_PORT ?= 5050
MLFLOW_ARTIFACTS ?= $(abspath mlartifacts)
MLFLOW_BACKEND ?= postgresql+psycopg2://pathcnn@127.0.0.1:$(PGPORT)/mlflow
MLFLOW_SERVER_OPTS ?=

.DEFAULT_GOAL := help
.PHONY: help venv repro test test-fast deps lint ui dashboard compare plots plots-diff postgres postgres-stop mlflow-server mlflow-server-stop bench clean lock

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with the pinned dependencies

repro: $(STAMP)  ## pull data/raw and any computed results from the DVC remote, run what is missing, print the metrics table
	$(BIN)/dvc pull data/raw.dvc
	$(BIN)/dvc repro --pull
	$(BIN)/pathcnn summary

test: $(STAMP)  ## run the whole test suite (unit, integration, browser, postgres when configured)
	$(BIN)/python -m pytest

test-fast: $(STAMP)  ## unit tests only
	$(BIN)/python -m pytest tests/unit

deps: $(STAMP)  ## rewrite dvc.yaml's code deps from the stages' imports (tests/unit/test_dvc_deps.py checks them)
	$(BIN)/python tests/unit/test_dvc_deps.py

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check src tests benchmarks

# One worker and MLflow's background job runner off: the UI needs neither (the runner alone is 8 processes, ~1.3 GB).
ui: $(STAMP)  ## MLflow UI on 127.0.0.1:5000 against mlflow.db (HOST=0.0.0.0 to expose deliberately)
	@test -f mlflow.db || { echo "make ui: no mlflow.db here: no stage has logged a run in this clone (a clone restored from a DVC remote has none; see docs/team.md)" >&2; exit 1; }
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} $(BIN)/mlflow ui \
		--backend-store-uri sqlite:///mlflow.db --host $${HOST:-127.0.0.1} --port $${PORT:-5000} --workers 1

dashboard: $(STAMP)  ## optuna-dashboard on 127.0.0.1:8080 against the study storage
	@storage=$${STORAGE:-$${PATHCNN_OPTUNA_STORAGE:-results/tune/optuna.journal}}; \
	case "$$storage" in *://*) ;; *) test -f "$$storage" || { echo "make dashboard: no study journal $$storage: no tune stage has run in this clone (a clone restored from a DVC remote has none; STORAGE=<url> for another storage)" >&2; exit 1; } ;; esac; \
	$(BIN)/optuna-dashboard "$$storage" --host $${HOST:-127.0.0.1} --port $${PORT:-8080}

compare: $(STAMP)  ## DVC experiments side by side: changed params and each model's headline numbers
	$(BIN)/pathcnn compare

# DVC's own page loads Vega from a CDN (blank offline); this template inlines it from vl-convert-python.
dvc_plots/offline-template.html: $(STAMP) src/pathcnn/plotpage.py
	$(BIN)/python -m pathcnn.plotpage $@

plots: dvc_plots/offline-template.html  ## dvc plots show into dvc_plots/index.html (works offline)
	$(BIN)/dvc plots show --html-template $< -o dvc_plots

plots-diff: dvc_plots/offline-template.html  ## the same for dvc plots diff REVS="HEAD exp-name" (default: workspace vs HEAD)
	$(BIN)/dvc plots diff $(REVS) --html-template $< -o dvc_plots

postgres:  ## install (Debian) and start a local PostgreSQL (databases pathcnn: Optuna studies, mlflow: make mlflow-server)
	bash .ci/postgres.sh start $(PGDATA) $(PGPORT)
	@echo "export PATHCNN_TEST_POSTGRES_URL=postgresql+psycopg2://pathcnn@127.0.0.1:$(PGPORT)/pathcnn"

postgres-stop:  ## stop the local PostgreSQL
	bash .ci/postgres.sh stop $(PGDATA) $(PGPORT)

mlflow-server: $(STAMP) postgres  ## team MLflow server on 127.0.0.1:5050 (MLFLOW_PORT), runs in PostgreSQL, artifacts in mlartifacts/ (see docs/team.md)
	bash .ci/mlflow-server.sh start $(MLFLOW_PORT) $(MLFLOW_BACKEND) $(MLFLOW_ARTIFACTS) $(MLFLOW_SERVER_OPTS)

mlflow-server-stop:  ## stop the MLflow server (PostgreSQL keeps running: make postgres-stop)
	bash .ci/mlflow-server.sh stop $(MLFLOW_PORT)

bench: $(STAMP)  ## run the benchmarks, print a table and write results/bench.json
	$(BIN)/python benchmarks/run.py

lock:  ## re-freeze requirements.lock from the current .venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^pathcnn' > requirements.lock

clean:  ## remove generated outputs (never data/raw, never mlflow.db or the study storage)
	rm -rf data/patches data/splits models results/train results/baseline results/control results/crossval results/crossval-untuned results/nonsense results/significance \
		results/tune/model* results/summary reports/figures reports/report.md reports/report.html reports/overview.png predictions \
		dvc_plots
