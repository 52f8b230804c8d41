#!/usr/bin/env bash
# MEMIT with the earlier edits' keys in its solve (`memit.preserve_edits`: the stack stays one
# least-squares fit of every edit so far, anchored at the unedited weights; docs/mass-editing.md,
# "Earlier edits in MEMIT's solve"). The 2,000-edit run's settings and cases (runs/seq-smollm2-cf-2000,
# whose MEMIT and AlphaEdit checkpoints are the comparison) with that one change: against MEMIT it
# shows what keeping earlier edits in the fit buys, against AlphaEdit what the null-space projection
# adds to the same K_p term. Batch 0's z (found on the unedited model with the same settings: step 1
# is MEMIT's and AlphaEdit's alike) was copied from
# runs/seq-smollm2-cf-alphaedit-contexts/alphaedit/targets/0000.safetensors, so batch 0 records no
# seconds. Resumable; N=500 (~1 h alone); N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}
.venv/bin/factpatch eval --sequential --quiet \
  --methods memit --set memit.preserve_edits=true \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-memit-preserve
