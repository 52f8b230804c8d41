#!/usr/bin/env bash
# MEMIT holding the earlier edits at keys read now (`memit.replay_edits` with `replay_scale` γ = 0:
# `preserve_edits` with fresh keys instead of stored ones; docs/mass-editing.md, "Writing the
# earlier edits again") on Gemma 3 270M: the protocol and cases of runs/seq-gemma3-cf-2000-postnorm
# and runs/seq-gemma3-cf-memit-preserve (the comparisons) with that one change; the SmolLM2 run of
# the same setting is runs/seq-smollm2-cf-memit-hold. Batch 0's z (found on the unedited model with
# the same settings) was copied from runs/seq-gemma3-cf-memit-preserve/memit/targets/0000, so batch
# 0 records no seconds. Resumable; N=500 by default; N=1000, N=2000 continue it.
# MEMIT's settings of this run (v_lr 0.5, post_norm_damping 1e-3) were Gemma 3's defaults until
# 2026-12-05, when they became 1.0 and 1e-2 (editing/registry.py, MODEL_DEFAULTS); they are pinned
# below so that the run stays resumable and reproducible.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --model gemma3-270m \
  --methods memit --set memit.replay_edits=true --set memit.replay_scale=0 \
  --set memit.v_lr=0.5 --set memit.post_norm_damping=0.001 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-500}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-gemma3-cf-memit-hold
