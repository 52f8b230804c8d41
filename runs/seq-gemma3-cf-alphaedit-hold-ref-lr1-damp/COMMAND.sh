#!/usr/bin/env bash
# AlphaEdit held at keys read now (`replay_edits`, `replay_scale` γ = 0) with the reference's null
# space (`nullspace_threshold` 2·10⁻²) on Gemma 3 270M, at Gemma 3's AlphaEdit defaults since
# 2026-12-05 (v_lr 1.0, post_norm_damping 1e-2): runs/seq-gemma3-cf-alphaedit-hold-ref (the best
# AlphaEdit on Gemma 3 after 2,000 edits, ES / PS 88.4 / 72.5) with those defaults, which raised
# MEMIT held by 0.9 / 0.9 and 2.2 points of known facts. Same protocol and cases. Batch 0's z
# (v_lr 1.0 on the unedited model, the same z settings) was copied from
# runs/seq-gemma3-cf-alphaedit-lr1-damp/alphaedit/targets/0000, so batch 0 records no seconds.
# Resumable; N=500 by default; N=1000, N=2000 continue it. ~8–11 min a batch at one torch thread
# beside another run, growing with the stack.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --model gemma3-270m \
  --methods alphaedit --set alphaedit.replay_edits=true --set alphaedit.replay_scale=0 \
  --set alphaedit.nullspace_threshold=0.02 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-500}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-gemma3-cf-alphaedit-hold-ref-lr1-damp
