#!/usr/bin/env bash
# AlphaEdit holding the earlier edits at keys read now (`alphaedit.replay_edits` with
# `replay_scale` γ = 0: AlphaEdit with K_p K_pᵀ from keys read now instead of the stored ones) on
# Gemma 3 270M: the protocol and cases of runs/seq-gemma3-cf-2000-postnorm (its AlphaEdit is the
# comparison) with that one change. On SmolLM2 (runs/seq-smollm2-cf-alphaedit-hold) it wrote no
# more but kept more known facts after 2,000 edits (35.7 % against 25.0 %); this asks whether
# Gemma 3 does the same, before `--preset sequential` sets it for AlphaEdit too. Batch 0's z (found
# on the unedited model with the same settings) was copied from
# runs/seq-gemma3-cf-2000-postnorm/alphaedit/targets/0000, so batch 0 records no seconds.
# Resumable; N=500 by default; N=1000, N=2000 continue it. ~6–11 min a batch at one torch thread.
# AlphaEdit's settings of this run (v_lr 0.5, post_norm_damping 1e-3) were Gemma 3's defaults until
# 2026-12-05, when they became 1.0 and 1e-2 (editing/registry.py, MODEL_DEFAULTS); they are pinned
# below so that the run stays resumable and reproducible.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --model gemma3-270m \
  --methods alphaedit --set alphaedit.replay_edits=true --set alphaedit.replay_scale=0 \
  --set alphaedit.v_lr=0.5 --set alphaedit.post_norm_damping=0.001 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-500}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-gemma3-cf-alphaedit-hold
