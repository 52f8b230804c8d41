#!/usr/bin/env bash
# MEMIT holding the earlier edits at keys read now (`memit.replay_edits` with `replay_scale` γ = 0;
# docs/mass-editing.md, "Holding the earlier edits at keys read now") on zsRE: the protocol and
# cases of runs/seq-smollm2-zsre-500 (the 500 zsRE cases on SmolLM2 in batches of 100, a checkpoint
# every 100; its AlphaEdit, MEMIT and unedited model are the comparisons) with that one change —
# does the best CounterFact setting hold answers of several tokens as well? Batch 0's z (found on
# the unedited model with the same settings) was copied from runs/seq-smollm2-zsre-500/memit/targets/0000,
# so batch 0 records no seconds. Resumable: rerun to continue.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet \
  --methods memit --set memit.replay_edits=true --set memit.replay_scale=0 \
  --dataset zsre:${DATA:-../shared/datasets}/zsre-500.json \
  --n 500 --batch-size 100 --checkpoint-every 100 \
  --known ../shared/datasets/known_1000.json \
  --out runs/seq-smollm2-zsre-memit-hold
