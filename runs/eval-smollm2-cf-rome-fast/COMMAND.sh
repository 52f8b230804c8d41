#!/usr/bin/env bash
# ROME with `--preset fast` (v_lr 2.0, a bfloat16 δ optimisation) on CounterFact's first 100 cases,
# beside the same cases with the defaults and the same key statistics (runs/eval-smollm2-cf-rome-topk:
# the top-k corpus that ships with factpatch). Issue 17: the same quality, fewer seconds. Resumable;
# ~8 min alone. same-cases.json: each metric's paired difference with its interval.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --quiet --model smollm2-135m --methods rome --preset fast \
  --dataset counterfact:../shared/datasets/counterfact-train.json --n 100 \
  --out runs/eval-smollm2-cf-rome-fast
.venv/bin/factpatch eval paired runs/eval-smollm2-cf-rome-topk runs/eval-smollm2-cf-rome-fast \
  --method rome --json runs/eval-smollm2-cf-rome-fast/same-cases.json
