#!/usr/bin/env bash
# Sequential editing on zsRE (the AlphaEdit paper's second table): the 500 zsRE cases on SmolLM2 in
# batches of 100, never reverted, every edited case scored at every checkpoint (efficacy,
# paraphrase, specificity: token accuracy, the paper's zsRE convention), known facts and
# perplexity as on CounterFact. AlphaEdit, MEMIT and the unedited model, the defaults.
# Resumable: rerun to continue (METHODS= chooses). ~1 h alone on the 2-core CPU (estimate: five
# batches of ~4 min for each method, the checkpoints' scoring on top).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet \
  --methods "${METHODS:-alphaedit,memit,none}" \
  --dataset zsre:${DATA:-../shared/datasets}/zsre-500.json \
  --n 500 --batch-size 100 --checkpoint-every 100 \
  --known ../shared/datasets/known_1000.json \
  --out runs/seq-smollm2-zsre-500
