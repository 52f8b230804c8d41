#!/usr/bin/env bash
# MEMIT holding the earlier edits at keys read now (`memit.replay_edits` with `replay_scale` γ = 0:
# each batch reads every earlier edit's bare-prompt key on the model as it is and keeps that edit's
# output where it now is — `preserve_edits` with fresh keys instead of the stored, stale ones;
# docs/mass-editing.md, "Writing the earlier edits again"). The 2,000-edit run's settings and cases
# (runs/seq-smollm2-cf-2000) with that one change. Between `preserve_edits` (stored keys; its
# earlier edits' states drift off, and the edits that drift most fail most) and `replay_edits`
# γ = 1 (states pulled back to z; the rest of the model worn down) it asks whether the stale keys
# are what lets the states drift. Batch 0's z (found on the unedited model with the same settings)
# was copied from runs/seq-smollm2-cf-memit-replay/memit/targets/0000, so batch 0 records no
# seconds. Resumable; N=500; N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}
.venv/bin/factpatch eval --sequential --quiet \
  --methods memit --set memit.replay_edits=true --set memit.replay_scale=0 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-memit-hold
