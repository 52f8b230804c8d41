#!/usr/bin/env bash
# AlphaEdit holding the earlier edits at keys read now (`alphaedit.replay_edits` with
# `replay_scale` γ = 0): each batch reads every earlier edit's key on the model as it is and asks
# the update to leave those keys' outputs where they are, instead of AlphaEdit's stored K_p (the
# keys read when each edit was written) — algebraically AlphaEdit with K_p K_pᵀ from fresh keys.
# The MEMIT run of the same setting (runs/seq-smollm2-cf-memit-hold) gained ES +3.0 / PS +3.2 at
# 2,000 edits over stored keys; this asks the same of AlphaEdit (runs/seq-smollm2-cf-2000, ES 85.9,
# PS 74.7 there). The 2,000-edit run's settings and cases with that one change. Batch 0's z (found
# on the unedited model with the same settings) was copied from
# runs/seq-smollm2-cf-alphaedit-replay/alphaedit/targets/0000, so batch 0 records no seconds.
# Resumable; N=500 by default; N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}
.venv/bin/factpatch eval --sequential --quiet \
  --methods alphaedit --set alphaedit.replay_edits=true --set alphaedit.replay_scale=0 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-alphaedit-hold
