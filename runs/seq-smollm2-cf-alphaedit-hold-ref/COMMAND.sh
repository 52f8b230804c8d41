#!/usr/bin/env bash
# AlphaEdit as the reference sets its null space (`nullspace_threshold` 2·10⁻², absolute: ~30 % of
# tr C on SmolLM2's layers 1–5 against factpatch's default 10 %), holding the earlier edits at keys
# read now (`replay_edits`, `replay_scale` γ = 0), on the 2,000-edit run's cases and settings. Held
# at the default 10 % (runs/seq-smollm2-cf-alphaedit-hold) AlphaEdit wrote ES 86.4 / PS 76.4 at
# 2,000 while MEMIT held the same way (no null space at all) wrote 94.8 / 85.4: this asks whether a
# larger null space, the reference's, lets AlphaEdit write as MEMIT does over 2,000 edits and what
# it costs in known facts. On one batch 20–30 % of tr C wrote ES 96–100 ("What one batch writes").
# Batch 0's z (found on the unedited model with the same z settings) was copied from
# runs/seq-smollm2-cf-alphaedit-hold/alphaedit/targets/0000, so batch 0 records no seconds.
# Resumable; N=500 by default; N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}
.venv/bin/factpatch eval --sequential --quiet \
  --methods alphaedit --set alphaedit.replay_edits=true --set alphaedit.replay_scale=0 \
  --set alphaedit.nullspace_threshold=0.02 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-alphaedit-hold-ref
