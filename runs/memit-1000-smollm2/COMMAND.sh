#!/usr/bin/env bash
# Issue 12: one batch of 1,000 MEMIT edits on SmolLM2 (CounterFact 0–999, written at once), every case
# scored on the edited model, beside the unedited model on the same cases; known facts kept and
# perplexity after. Compare with MEMIT's 10,000-edit batch on GPT-J (ES 98.9, PS 88.6, NS 73.7).
# ~45 min of z on this 2-core CPU, ~10 min of scoring a method; resumable (the patch is the checkpoint).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --methods memit,none \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n 1000 --batch-size 1000 --checkpoint-every 1000 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/memit-1000-smollm2
