# callqa: `make demo` sets everything up and runs the pipeline; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Install once per lock hash: a changed requirements.lock or pyproject.toml reinstalls.
LOCK_HASH := $(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(LOCK_HASH)
PYTEST_ARGS ?=
UI_PORT ?= 5000

# Offline and quiet: `callqa` itself sets the no-telemetry / offline defaults (cli.py
# OFFLINE_DEFAULTS) and tests/conftest.py sets them for the tests.


.PHONY: install demo model test test-fast lint format schema bench ui serve prefect-server clean

install: $(STAMP)

# The stamp's name carries the content hash, so no file-time prerequisites: a fresh clone
# beside a venv installed from the same lock does not reinstall.
$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-cache-dir --upgrade "pip<26"
	$(BIN)/python -m pip install --quiet --no-cache-dir -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-cache-dir --no-deps -e .
	# The review app's browser test drives Debian's Chromium (root only: CI's fresh machine).
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { test "$$(id -u)" -ne 0 || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }; }
	rm -f $(VENV)/.installed-*
	touch $@

# The whole pipeline on 8 demo calls through DVC (demo/dvc.yaml, generated from dvc.yaml; its
# outputs under data/demo, reports/demo, models/demo), then register + promote the scorer.
demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro demo/dvc.yaml
	$(BIN)/callqa register
	$(BIN)/callqa promote || test $$? -eq 3  # 3 = refused by the gate: the demo goes on
	@echo
	@echo "Done (again: \`dvc repro demo/dvc.yaml\` does nothing until code, params or data change). Results:"
	@echo "  manifest        data/demo/manifest.parquet (accepted/quarantined: data/demo/accepted.parquet, data/demo/quarantine.parquet)"
	@echo "  data docs       reports/demo/data_docs/index.html"
	@echo "  transcripts     data/demo/transcripts/<call_id>.json"
	@echo "  QA results      reports/results.jsonl"
	@echo "  call reports    reports/calls/index.html"
	@echo "  demo model      models/demo (metrics: reports/demo/eval/metrics.json; MLflow: make ui)"
	@echo "  registry        callqa-scorer in MLflow (make ui), served by: .venv/bin/callqa serve"

# The default QA model: synth -> ... -> featurize -> train -> evaluate as DVC stages (dvc.yaml),
# so a second `make model` does nothing unless code, params, data or reviewers' labels changed
# (`export` reads the review database, which is no DVC dep: it is forced, and featurize reruns
# only when the labels it writes changed).
model: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro -f export
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro evaluate
	@echo
	@echo "Done. Model: models/callqa-qa (used by \`callqa score\` with no flag)"
	@echo "  metrics         reports/eval/metrics.json (dvc metrics show)"
	@echo "  training curves reports/train/curves.png; confusion reports/eval/confusion_emotion.png"
	@echo "  MLflow runs     make ui"

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks flows demo
	$(BIN)/ruff format --check src tests benchmarks flows demo

format: install
	$(BIN)/ruff format src tests benchmarks flows demo
	$(BIN)/ruff check --fix src tests benchmarks flows demo

schema: install
	$(BIN)/callqa schema --out docs/qa_result.schema.json

bench: install
	$(BIN)/python benchmarks/bench_wer.py
	$(BIN)/python benchmarks/bench_scorecard.py
	$(BIN)/python benchmarks/bench_throughput.py
	$(BIN)/python benchmarks/bench_roles.py
	$(BIN)/python benchmarks/bench_serve.py
	$(BIN)/python benchmarks/bench_inbox.py
	$(BIN)/python benchmarks/bench_review.py

# MLflow UI on the local tracking store. One worker and no job runner: 0.5 GB and 8 s to start
# instead of 2.7 GB and 23 s (../shared/design/STACK_NOTES.md); Ctrl-C stops it.
ui: install
	mkdir -p mlflow
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true \
		$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db \
		--host 127.0.0.1 --port $(UI_PORT) -w 1

# The production model of the registry over HTTP (make demo registers and promotes one).
serve: install
	$(BIN)/callqa serve

# Prefect server on 127.0.0.1:4200 (state in .prefect/), the deployments of prefect.yaml
# (retrain/nightly, score_inbox/every-15-min; schedules from params.yaml) and a worker for the
# flows.work_pool pool. The worker runs in the foreground, so Ctrl-C stops it (a worker put in
# the background of a script ignores SIGINT/SIGTERM: STACK_NOTES.md); the server, in the
# background, is stopped by the EXIT trap.
prefect-server: install
	mkdir -p .prefect
	export PREFECT_HOME="$(CURDIR)/.prefect" PREFECT_API_URL=http://127.0.0.1:4200/api \
		PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_LOGGING_EXTRA_LOGGERS=callqa; \
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200 & server=$$!; \
	trap 'kill $$server; wait $$server' EXIT; \
	$(BIN)/python flows/deploy.py wait && \
	$(BIN)/python flows/deploy.py pool && \
	$(BIN)/python flows/deploy.py worker

clean:
	rm -rf data reports .cache
