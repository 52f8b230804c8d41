#!/usr/bin/env bash
# AlphaEdit with every earlier edit written again in each batch (`alphaedit.replay_edits`: each
# patch carries its z; each batch reads every earlier edit's key and residual z − h_L on the model
# as it is and solves for them with the new ones, the null space of ordinary text's keys still
# projecting the update; docs/mass-editing.md, "Writing the earlier edits again"). The 2,000-edit
# run's settings and cases (runs/seq-smollm2-cf-2000) with that one change: it asks whether
# AlphaEdit's decay over 2,000 edits (ES 85.9, PS 74.7 there) is the earlier edits wearing down.
# Batch 0's z (found on the unedited model with the same settings; MEMIT's and AlphaEdit's z are
# alike) was copied from runs/seq-smollm2-cf-memit-replay/memit/targets/0000, so batch 0 records
# no seconds. Resumable; N=500; N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}
.venv/bin/factpatch eval --sequential --quiet \
  --methods alphaedit --set alphaedit.replay_edits=true \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-alphaedit-replay
