# imprint: `make demo` (install + the whole flow on the embedded sample) and `make test` (install + tests).
# Every target installs what it needs first; `make help` lists them.

PYTHON   ?= python3
VENV     ?= .venv
TORCH    ?= cpu
PIP_ARGS ?=
BIN      := $(VENV)/bin
IMPRINT  := $(BIN)/imprint
STAMP    := $(VENV)/.installed-$(TORCH)

DATA     ?= data
SOURCE   ?= sample
ROOT     ?=
RECIPE   ?=
EXECUTOR ?= ray
WORKERS  ?=
LIMIT    ?=
PYTEST_ARGS ?=
RUNS     ?= runs
STAGE1_CONFIG ?= stage1-sd21
STAGE2_CONFIG ?= stage2-sd21
TRAIN_ARGS ?=
EVAL_ARGS ?=
REPORT   ?= reports/eval

export NO_ALBUMENTATIONS_UPDATE := 1
export RAY_USAGE_STATS_ENABLED := 0
export HF_HUB_DISABLE_TELEMETRY := 1

.DEFAULT_GOAL := help
.PHONY: help install demo test typecheck ingest pairs train-stage1 train-stage2 eval bench clean

help: ## list the targets
	@echo "imprint: IMPRINT's training data and two-stage model"
	@echo
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## (.*)/  make \1\t\2/' | expand -t 24
	@echo
	@echo "Variables: DATA=$(DATA) SOURCE=$(SOURCE) ROOT=$(ROOT) EXECUTOR=$(EXECUTOR) TORCH=$(TORCH) (cpu|cuda)"

install: $(STAMP) ## create .venv and install imprint with its pinned torch (TORCH=cpu|cuda)

$(STAMP): pyproject.toml constraints/torch-$(TORCH).txt scripts/system-deps.sh
	@scripts/system-deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints/torch-$(TORCH).txt $(PIP_ARGS) -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

DEMO_RECIPE := configs/data/sample.yaml

demo: install ## install, then run the whole flow on the embedded sample data (tiny models)
	$(IMPRINT) ingest --recipe $(DEMO_RECIPE) --out $(DATA)/demo --executor $(EXECUTOR)
	$(IMPRINT) pairs --recipe $(DEMO_RECIPE) --records $(DATA)/demo/records --out $(DATA)/demo/shards \
		--executor $(EXECUTOR)
	$(IMPRINT) verify $(DATA)/demo/shards
	$(IMPRINT) preview $(DATA)/demo/shards --n 24 --out $(DATA)/demo/preview.html
	$(MAKE) --no-print-directory train-stage1 train-stage2 DATA=$(DATA)/demo RUNS=$(DATA)/demo/runs \
		STAGE1_CONFIG=stage1-tiny STAGE2_CONFIG=stage2-tiny TRAIN_ARGS="max_steps=8"
	@echo
	@echo "demo: records in $(DATA)/demo/records/, shards in $(DATA)/demo/shards/stage{1,2}/ (manifest.json,"
	@echo "demo: README.md, report.json), a contact sheet in $(DATA)/demo/preview.html, runs in $(DATA)/demo/runs/"
	@echo "demo: (stage1/encoder, stage2/final, validation grids, TensorBoard logs)."
	$(MAKE) --no-print-directory eval DATA=$(DATA)/demo RUNS=$(DATA)/demo/runs REPORT=$(DATA)/demo/report \
		EVAL_ARGS="--n 4 --steps 10 --dino tiny --clip tiny"
	@echo "demo: the models are tiny and randomly initialised: they check the wiring, not the quality."
	@echo "demo: the report is $(DATA)/demo/report/report.html"

test: install typecheck ## install, then the type check and the whole test suite
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

typecheck: install ## mypy over the whole package (strict for the core; settings in pyproject.toml)
	$(BIN)/mypy

ingest: install ## ingest RECIPE's sources, or SOURCE (ytvos|vipseg|ppr10k|mvimgnet|sample) from ROOT, into DATA/records
	$(IMPRINT) ingest $(if $(RECIPE),--recipe $(RECIPE),$(SOURCE) $(if $(ROOT),--root $(ROOT))) --out $(DATA) \
		--executor $(EXECUTOR) $(if $(WORKERS),--workers $(WORKERS)) $(if $(LIMIT),--limit $(LIMIT))

pairs: install ## build stage-1 and stage-2 shards from DATA/records into DATA/shards (RECIPE optional), then verify
	$(IMPRINT) pairs $(if $(RECIPE),--recipe $(RECIPE)) --records $(DATA)/records --out $(DATA)/shards \
		--executor $(EXECUTOR) $(if $(WORKERS),--workers $(WORKERS))
	$(IMPRINT) verify $(DATA)/shards

train-stage1: install ## train stage 1 (STAGE1_CONFIG, default stage1-sd21) on DATA/shards/stage1 into RUNS/stage1
	$(IMPRINT) train --stage 1 --config $(STAGE1_CONFIG) --shards $(DATA)/shards/stage1 --out $(RUNS)/stage1 \
		$(if $(wildcard $(RUNS)/stage1/checkpoints/checkpoint-*),--resume latest) $(TRAIN_ARGS)

train-stage2: install ## train stage 2 (STAGE2_CONFIG) on DATA/shards/stage2 with RUNS/stage1/encoder into RUNS/stage2
	$(IMPRINT) train --stage 2 --config $(STAGE2_CONFIG) --shards $(DATA)/shards/stage2 --out $(RUNS)/stage2 \
		--encoder $(RUNS)/stage1/encoder $(if $(wildcard $(RUNS)/stage2/checkpoints/checkpoint-*),--resume latest) \
		$(TRAIN_ARGS)

eval: install ## composite DATA/shards/stage2-holdout with RUNS/stage2/final and score it into REPORT/
	$(IMPRINT) eval --model $(RUNS)/stage2/final --test $(DATA)/shards/stage2-holdout --out $(REPORT) $(EVAL_ARGS)
	@echo "eval: open $(REPORT)/report.html (numbers in $(REPORT)/metrics.json)"

bench: install ## run the benchmarks; results in bench/results/*.json
	$(IMPRINT) bench --out bench/results

clean: ## remove generated data and caches (keeps .venv)
	rm -rf $(DATA) .pytest_cache bench/results/*.json
