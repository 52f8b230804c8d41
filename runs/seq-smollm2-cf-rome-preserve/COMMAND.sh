#!/usr/bin/env bash
# Sequential ROME with the earlier edits' keys in the update's metric (`rome.preserve_edits`,
# docs/mass-editing.md "Settings"): the protocol and ROME settings of runs/seq-smollm2-cf-2000 (the
# paper's, 21 contexts; the same CounterFact cases in the same order, batches of 100 one edit after
# another, every edited case scored at each checkpoint, known facts and perplexity), to 500 edits
# first. Compare with that run's ROME (and AlphaEdit, MEMIT, the unedited model) on the same cases:
#   factpatch eval paired runs/seq-smollm2-cf-2000 runs/seq-smollm2-cf-rome-preserve --method rome --method-b rome
# Resumable (ROME's patches are versioned): rerun to continue; N=2000 takes it on.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --methods rome --set rome.preserve_edits=true \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-500}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-rome-preserve
