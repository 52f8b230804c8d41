#!/usr/bin/env bash
# Gemma 3 270M, AlphaEdit with z's Adam step v_lr 1.0 (reference 0.5) and the post-norm mapping's
# damping 1e-2 (default 1e-3): on one batch of 100 (runs/seq-gemma3-cf-2000/diagnosis/
# lr_damping_known.jsonl, 2026-12-04) the default z ends unconverged (24.9 of 25 steps, P(o*) 0.53);
# at v_lr 1.0 it converges (21.7 steps, P 0.90), and the larger damping keeps the write small:
# ES / PS / NS 100 / 83 / 74 and 81.4 % of the known facts against the defaults' 96 / 79 / 71 and
# 76.5 %. This run asks whether that holds over 2,000 sequential edits: the protocol and cases of
# runs/seq-gemma3-cf-2000-postnorm (its AlphaEdit is the comparison) with those two changes.
# Batch 0's z is that diagnosis's (v_lr 1.0 on the unedited model), so batch 0 records no seconds.
# Resumable; N=500 by default; N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --model gemma3-270m \
  --methods alphaedit --set alphaedit.v_lr=1.0 --set alphaedit.post_norm_damping=0.01 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-500}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-gemma3-cf-alphaedit-lr1-damp
