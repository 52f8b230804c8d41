#!/usr/bin/env bash
# SUPERSEDED 2026-11-30: the corpus is now drawn top-k first; see runs/eval-smollm2-cf-rome-topk.
# ROME on CounterFact's first 100 cases with key statistics from the corpus sampled in one batch
# (stats.SAMPLE_BATCH = 256; before: batches of 32), to set beside the same 100 cases of
# runs/eval-smollm2-cf-rome (issue 17: C of the same quality). Resumable.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --quiet --model smollm2-135m --methods rome \
  --dataset counterfact:../shared/datasets/counterfact-train.json --n 100 \
  --out runs/eval-smollm2-cf-rome-c256
