#!/usr/bin/env bash
# The 30-fact average of runs/trace-smollm2 traced in bfloat16 (factpatch trace --dtype bfloat16),
# to set the approximate mode beside the exact one (BENCHMARKS.md). Resumable. Compare with
#   python3 runs/trace-smollm2-bf16/compare.py
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch trace --model smollm2-135m --dataset ../shared/datasets/known_1000.json --n 30 \
  --sever mlp --sever attn --dtype bfloat16 --quiet --out runs/trace-smollm2-bf16
