#!/usr/bin/env bash
# MEMIT with every earlier edit written again in each batch (`memit.replay_edits`: each patch
# carries its z; each batch reads every earlier edit's key and residual z − h_L on the model as it
# is and solves for all of them with the new ones; docs/mass-editing.md, "Writing the earlier
# edits again"). The 2,000-edit run's settings and cases (runs/seq-smollm2-cf-2000) with that one
# change. Against `preserve_edits` (runs/seq-smollm2-cf-memit-preserve, the same solve with the
# keys stored when each edit was made and no residual) it shows whether stale keys and unrepaired
# decay are what wore that run down after 1,000 edits. Batch 0's z (found on the unedited model
# with the same settings) was copied from runs/seq-smollm2-cf-memit-preserve/memit/targets/0000,
# so batch 0 records no seconds. Resumable; N=500; N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}
.venv/bin/factpatch eval --sequential --quiet \
  --methods memit --set memit.replay_edits=true \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-memit-replay
