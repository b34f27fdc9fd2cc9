#!/usr/bin/env bash
# The GPU benchmarks in one call of a lent accelerator machine (docs/benchmarks.md, "On a GPU"): run from the
# repository root there, with `.whl` (the Python packages that machine lacks, as wheels) and `.devcarry` (SmolLM2's
# config and tokenizer, and pure-Python packages without wheels) carried; the results are copied to $OUT.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD/.devcarry/site:$PWD" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
WEIGHTS=.devcarry/smollm2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)"
timeout 150 python3 -m bench.train_throughput --device cuda --random-weights $WEIGHTS --steps 50 2>&1 | grep -v -i warn | tail -30
timeout 120 python3 -m bench.train_throughput --device cuda --random-weights $WEIGHTS --steps 50 --batch-size 16 \
  --name train_throughput_cuda_batch16 2>&1 | grep -E '"ratio"|useful_tokens_per_second'
timeout 360 python3 -m bench.serving --device cuda --random-weights $WEIGHTS --requests 2 --repeats 2 2>&1 | grep -v -i warn | tail -45
cp bench/results/*cuda*.json "$OUT"/ 2>/dev/null
ls "$OUT"
