# roadsigns: the verbs people expect. `make demo` and `make test` set up what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PACKAGES := -e shared -e services/gateway -e services/detector -e services/ocr -e services/tracker -e services/cli -e sdk -e training
DEV_ENV := ROADSIGNS_DATABASE_URL=postgresql+psycopg2://postgres@127.0.0.1:5432/roadsigns \
	ROADSIGNS_BROKER_URL=redis://127.0.0.1:6379/0 ROADSIGNS_BLOB_DIR=$(CURDIR)/.dev/blobs \
	ROADSIGNS_MLFLOW_TRACKING_URI=http://127.0.0.1:5000 MLFLOW_DISABLE_TELEMETRY=true \
	ROADSIGNS_CALLBACK_ALLOW_PRIVATE=true
# As in the Dockerfile, compose and Helm: a deadline and a size limit on request heads, 503 past 200 connections.
GATEWAY_LIMITS := --http roadsigns.gateway.protocol:HeadDeadlineHttpToolsProtocol --h11-max-incomplete-event-size 65536 \
	--limit-concurrency 200 --timeout-keep-alive 5

.PHONY: setup system-deps demo dev migrate test test-fast lint typecheck format train ship heldout evaluate bench soak clean tools deploy-check dashboards \
	screenshots up up-gpu down

$(VENV)/.installed: requirements-dev.txt shared/pyproject.toml services/*/pyproject.toml sdk/pyproject.toml training/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q $(PACKAGES)
	touch $@

setup: system-deps $(VENV)/.installed ## install system packages (Tesseract) and the Python environment

# Type faces the readers' training draws signs in (training/src/roadsigns/training/faces.py, `wide`).
FONT_PACKAGES := fonts-opendin fonts-routed-gothic fonts-liberation fonts-dejavu-extra fonts-urw-base35 \
	fonts-roboto-unhinted fonts-freefont-ttf

system-deps: ## Tesseract (eng, fra, deu), Chromium for the browser tests, unzip, training type faces, when missing
	@if ! command -v tesseract >/dev/null || ! tesseract --list-langs 2>/dev/null | grep -q deu \
			|| ! command -v chromium >/dev/null || ! command -v unzip >/dev/null \
			|| ! dpkg -s $(FONT_PACKAGES) >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q tesseract-ocr tesseract-ocr-eng \
			tesseract-ocr-fra tesseract-ocr-deu chromium unzip libgl1 $(FONT_PACKAGES); fi

demo: setup ## analyze the sample photos in one process (no servers) and print the signs found
	$(BIN)/roadsigns analyze tests/data/photos --annotate out/demo -o out/demo/results.json
	@$(PY) -m roadsigns.cli.summary out/demo/results.json

migrate: setup
	$(DEV_ENV) $(BIN)/roadsigns-migrate

dev: setup migrate ## every service as a local process against local Redis and Postgres, plus Flower and MLflow
	@mkdir -p .dev/blobs .dev/metrics; trap 'kill 0' EXIT; \
	$(BIN)/mlflow server --host 127.0.0.1 --port 5000 --workers 1 \
		--backend-store-uri sqlite:///$(CURDIR)/.dev/mlflow.db --default-artifact-root $(CURDIR)/.dev/mlartifacts & \
	$(DEV_ENV) $(BIN)/uvicorn --factory roadsigns.gateway.app:create_app --host 127.0.0.1 --port 8000 $(GATEWAY_LIMITS) & \
	$(DEV_ENV) $(BIN)/celery -A roadsigns.detector.worker worker -Q detect -c 1 -n detector@%h -l INFO & \
	$(DEV_ENV) $(BIN)/celery -A roadsigns.ocr.worker worker -Q ocr -c 2 -n ocr@%h -l INFO & \
	$(DEV_ENV) $(BIN)/celery -A roadsigns.tracker.worker worker -Q track -c 2 -n tracker@%h -l INFO & \
	$(DEV_ENV) $(BIN)/celery -A roadsigns.tracker.worker worker -Q webhook -c 2 -n webhook@%h -l INFO & \
	$(DEV_ENV) $(BIN)/celery -A roadsigns.tracker.worker beat -s .dev/celerybeat-schedule -l INFO & \
	FLOWER_BASIC_AUTH=$${FLOWER_BASIC_AUTH:-dev:dev} $(DEV_ENV) $(BIN)/celery -A roadsigns.tracker.worker flower \
		--address=127.0.0.1 --port=5555 & \
	wait

test: setup tools ## the whole test suite: real Postgres, Redis, Celery, Tesseract, model, Chromium, Prometheus
	$(BIN)/pytest -q tests

test-fast: setup ## the in-process tier (tests/fast): local Postgres and Redis, shipped models, no Celery pool or server
	$(BIN)/pytest -q tests/fast

lint: setup ## ruff (check and format) and the type check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

typecheck: setup ## mypy over shared/ and the services (settings and strictness: pyproject.toml)
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

train: setup ## train detector, classifier and the two text readers from ../shared/data (parameters: training/config.yaml)
	$(BIN)/roadsigns-train --config training/config.yaml

ship: setup ## copy the weights make train wrote (.train/weights) into the packages the services load
	$(BIN)/roadsigns-train --config training/config.yaml --stages ship

heldout: setup ## write the held-out evaluation set (the split make train keeps out) into .train/heldout
	$(BIN)/roadsigns-train --config training/config.yaml --stages heldout

evaluate: heldout ## the README's accuracy figures: the evaluation CLI on the held-out set and its out-of-domain sets
	$(BIN)/roadsigns evaluate detection --images .train/heldout/images --gt .train/heldout/gt.txt
	@echo "== every sign of the held-out photos, the 43 classes and the others (training/gtsdb_other_signs.txt): recall_any, precision_any"
	$(BIN)/roadsigns evaluate detection --quiet --images .train/heldout/images --gt .train/heldout/gt-all.txt
	$(BIN)/roadsigns evaluate classification --npz .train/heldout/gtsrb-val.npz
	@echo "== out of domain: the same crops, yellow-faced"
	$(BIN)/roadsigns evaluate classification --npz .train/heldout/ood/gtsrb-val-yellow.npz
	@echo "== the classifier alone on all 852 GTSDB signs (another camera; it trains on GTSRB crops only), cut from their true boxes"
	$(BIN)/roadsigns evaluate classification --images ../shared/data/gtsdb-train/images --gt ../shared/data/gtsdb-train/gt.txt
	for set in zoomed downscaled pasted large yellow closeup; do \
		echo "== out of domain: $$set"; \
		$(BIN)/roadsigns evaluate detection --quiet --images .train/heldout/ood/$$set/images --gt .train/heldout/ood/$$set/gt.txt; \
	done
	for set in downscaled large; do \
		echo "== out of domain: $$set, every sign"; \
		$(BIN)/roadsigns evaluate detection --quiet --images .train/heldout/ood/$$set/images --gt .train/heldout/ood/$$set/gt-all.txt; \
	done
	@echo "== the digit reader alone: held-out photos, close-ups, held-out GTSRB crops, the same yellow-faced"
	$(BIN)/roadsigns evaluate reading --images .train/heldout/images --gt .train/heldout/gt.txt
	$(BIN)/roadsigns evaluate reading --images .train/heldout/ood/closeup/images --gt .train/heldout/ood/closeup/gt.txt
	$(BIN)/roadsigns evaluate reading --npz .train/heldout/gtsrb-val.npz
	$(BIN)/roadsigns evaluate reading --npz .train/heldout/ood/gtsrb-val-yellow.npz

# The release the detector's speed is held to (issue 12's "no worse than now"): the last one before
# scale-robust inference. `make bench BASELINE=<rev>` compares with another; BASELINE= with none.
BASELINE ?= b127107
bench: setup ## detector backends compared, and OpenVINO as the BASELINE git revision ran it; bare pipeline against the queued services; accept rate; memory; detector batches (FP16 on a GPU)
	@command -v wrk >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get install -y -q wrk; }
	$(PY) -m benchmarks.backends tests/data/photos $(if $(BASELINE),--baseline $(BASELINE))
	$(PY) -m benchmarks.pipeline
	$(PY) -m benchmarks.batches --queued 40 --queued-batches 1,8

soak: setup ## 2,000 jobs through the services, memory of every process sampled over time
	$(PY) -m benchmarks.soak --jobs 2000

tools: ## offline deployment checkers into .tools/ (helm, kubernetes-validate, compose, promtool, hadolint)
	bash deploy/install-tools.sh

deploy-check: tools ## chart, compose, Prometheus rules, dashboards and Dockerfiles, checked offline
	bash deploy/check.sh

dashboards: ## rebuild the Grafana dashboard JSON from its generator
	python3 monitoring/grafana/dashboards/build.py

screenshots: setup ## refresh docs/screenshots/ from the browser tests
	ROADSIGNS_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/test_web.py

up: ## everything on one host with docker compose (first: cp deploy/compose.env.example .env, fill it in)
	docker compose up -d --build

up-gpu: ## the same, with the detector on an NVIDIA GPU
	docker compose -f docker-compose.yml -f docker-compose.gpu.yml up -d --build

down:
	docker compose down

clean:
	rm -rf out .dev .pytest_cache
