#!/usr/bin/env bash
# Gemma 3 270M, MEMIT held at keys read now (`--preset sequential` on Gemma 3: `memit.replay_edits`
# with `replay_scale` 0, runs/seq-gemma3-cf-memit-hold) with z's Adam step v_lr 1.0 (reference 0.5)
# and the post-norm mapping's damping 1e-2 (default 1e-3): the two settings that, on AlphaEdit, made
# Gemma 3's z converge and kept more of the model over 500 sequential edits
# (runs/seq-gemma3-cf-alphaedit-lr1-damp). On one batch MEMIT gained less from them
# (runs/seq-gemma3-cf-2000/diagnosis/lr_damping_known.jsonl: ES / PS / NS 97 / 82 / 75, 80.4 % of
# the known facts at the defaults; 100 / 84 / 74, 81.8 % with them); this run asks whether they
# lift Gemma 3's best sequential setting over 2,000 edits. The protocol and cases of
# runs/seq-gemma3-cf-memit-hold (the comparison) with those two changes. Batch 0's z (v_lr 1.0 on
# the unedited model; z does not depend on the method) was copied from
# runs/seq-gemma3-cf-alphaedit-lr1-damp/alphaedit/targets/0000, so batch 0 records no seconds.
# Resumable; N=500 by default; N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --model gemma3-270m \
  --methods memit --set memit.replay_edits=true --set memit.replay_scale=0 \
  --set memit.v_lr=1.0 --set memit.post_norm_damping=0.01 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-500}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-gemma3-cf-memit-hold-lr1-damp
