#!/usr/bin/env bash
# AlphaEdit with the reference's null space (`nullspace_threshold` 2·10⁻², absolute: 4–31 % of tr C
# at Gemma 3's layers 2–6, runs/seq-gemma3-cf-alphaedit-hold/nullspace-share-reference.json) holding
# the earlier edits at keys read now (`replay_edits`, `replay_scale` γ = 0) on Gemma 3 270M: the
# postnorm run's protocol and cases with those changes. On SmolLM2 the same setting
# (runs/seq-smollm2-cf-alphaedit-hold-ref) met the ES, PS, NS and entropy targets after 2,000 edits;
# this asks the same of Gemma 3. Batch 0's z (found on the unedited model with the same z
# settings) was copied from runs/seq-gemma3-cf-alphaedit-hold/alphaedit/targets/0000, so batch 0
# records no seconds. Resumable; N=500 by default; N=1000, N=2000 continue it. ~8–10 min a batch
# at one torch thread beside another run.
# AlphaEdit's settings of this run (v_lr 0.5, post_norm_damping 1e-3) were Gemma 3's defaults until
# 2026-12-05, when they became 1.0 and 1e-2 (editing/registry.py, MODEL_DEFAULTS); they are pinned
# below so that the run stays resumable and reproducible.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --model gemma3-270m \
  --methods alphaedit --set alphaedit.replay_edits=true --set alphaedit.replay_scale=0 \
  --set alphaedit.v_lr=0.5 --set alphaedit.post_norm_damping=0.001 \
  --set alphaedit.nullspace_threshold=0.02 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-500}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-gemma3-cf-alphaedit-hold-ref
