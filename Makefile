# recpipe: two commands set everything up on a fresh machine.
#   make train   venv + dependencies + embedded data + the MovieLens-100K recipe
#   make test    venv + dependencies + the test suite
# Both are idempotent: finished steps are skipped (stamp files in .venv/).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATASET ?= movielens-100k
PREPARED := data/prepared/$(DATASET)
RECIPE ?= recipes/movielens/config_lora.yaml
# the run follows DATASET: its data, output folder, W&B run name and group (RECIPE's other settings stay)
VARIANT := $(patsubst config_%,%,$(basename $(notdir $(RECIPE))))
RUN_NAME := $(DATASET)-$(VARIANT)
ARGS ?=
# CPU machines take the CPU wheel of torch (a plain `torch` would pull a multi-GB CUDA build). Machines with
# CUDA take PyPI's default build; to keep a torch you already have, use VENV_FLAGS=--system-site-packages.
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH_SPEC ?= $(if $(HAS_CUDA),torch>=2.6,torch==2.13.0)
VENV_FLAGS ?=

.DEFAULT_GOAL := help
.PHONY: help install data train test quality format bench clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@touch $@

$(VENV)/.torch: $(VENV)/.created
	@if $(PY) -c "import torch" 2>/dev/null; then echo "torch already installed: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else echo "installing $(TORCH_SPEC)"; $(PY) -m pip install --quiet "$(TORCH_SPEC)"; fi
	@touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev,minilm]"
	@touch $@

install: $(VENV)/.installed ## create .venv and install recpipe with its dependencies

data: $(VENV)/.installed ## fetch and prepare the embedded MovieLens-100K (DATASET=movielens-1m for the larger one)
	$(VENV)/bin/recpipe data fetch $(DATASET)
	$(VENV)/bin/recpipe data prepare --dataset $(DATASET) --output-dir $(PREPARED)

train: data ## run the main job: MovieLens-100K, packaged MiniLM, cached-vector phase then LoRA (DATASET=, RECIPE=, ARGS=)
	WANDB_RUN_GROUP=$${WANDB_RUN_GROUP:-$(DATASET)-retrieval} WANDB_TAGS=$${WANDB_TAGS:-$(DATASET),retrieval,$(VARIANT)} \
	$(VENV)/bin/accelerate launch -q $$($(PY) -m recpipe.launch_config) recipes/movielens.py --config $(RECIPE) \
		--dataset $(DATASET) --output_dir outputs/$(RUN_NAME) --run_name $(RUN_NAME) $(ARGS)

test: $(VENV)/.installed ## run the test suite
	$(VENV)/bin/pytest tests

quality: $(VENV)/.installed ## ruff check + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[dev,minilm,bench]"
	@touch $@

bench: data $(VENV)/.bench-installed ## benchmarks (quick mode; BENCH_MODE=full for everything) -> BENCHMARKS.md
	PY=$(PY) bench/run_all.sh $${BENCH_MODE:-quick}

clean: ## remove the venv, prepared data, outputs and local run logs (keeps the downloaded data cache)
	rm -rf $(VENV) data/prepared outputs wandb comparison trainer_output
