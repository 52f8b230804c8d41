#!/usr/bin/env bash
# MEMIT pulling the earlier edits a quarter of the way back to their z (`memit.replay_edits` with
# `replay_scale` γ = 0.25), between holding them where they are (γ = 0, `--preset sequential`,
# runs/seq-smollm2-cf-memit-hold: ES 94.8, perplexity 14.2 at 2,000) and writing them all the way
# back (γ = 1, runs/seq-smollm2-cf-memit-replay: ES 89.8, perplexity 47): does a partial pull-back
# lift ES past 95 without γ = 1's damage? The 2,000-edit run's settings and cases with that one
# change. Batch 0's z (found on the unedited model with the same settings) was copied from
# runs/seq-smollm2-cf-memit-hold/memit/targets/0000, so batch 0 records no seconds.
# Resumable; N=500 by default; N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet \
  --methods memit --set memit.replay_edits=true --set memit.replay_scale=0.25 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-500}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-memit-replay-quarter
