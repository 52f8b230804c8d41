#!/usr/bin/env bash
# ROME on CounterFact's first 100 cases with key statistics from the corpus drawn top-k first
# (core.generate.sample_top_k, 2026-11-30), to set beside the same 100 cases of
# runs/eval-smollm2-cf-rome (issue 17: C of the same quality). ~30–45 min alone. Resumable.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --quiet --model smollm2-135m --methods rome \
  --dataset counterfact:../shared/datasets/counterfact-train.json --n 100 \
  --out runs/eval-smollm2-cf-rome-topk
