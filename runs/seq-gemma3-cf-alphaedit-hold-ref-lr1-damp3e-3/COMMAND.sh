#!/usr/bin/env bash
# AlphaEdit held at keys read now with the reference's null space on Gemma 3 270M, v_lr 1.0 (the
# default since 2026-12-05) and the post-norm damping 3·10⁻³ instead of the default 10⁻²: Gemma 3's
# paraphrase score is what keeps it farthest from issue 12's targets (PS 72.5 at 2,000 edits in the
# best AlphaEdit run), and on one batch only a smaller damping raised it (AlphaEdit at v_lr 1.0:
# PS 83 at 10⁻², 89 at 3·10⁻³, 91 at 10⁻³; runs/seq-gemma3-cf-2000/diagnosis/lr_damping_known.jsonl)
# at a cost in the neighbours and known facts. This asks what that buys over 2,000 edits, beside
# runs/seq-gemma3-cf-alphaedit-hold-ref-lr1-damp (the same run at 10⁻²). Batch 0's z (v_lr 1.0 on
# the unedited model; z does not depend on the damping) was copied from
# runs/seq-gemma3-cf-alphaedit-lr1-damp/alphaedit/targets/0000, so batch 0 records no seconds.
# Resumable; N=500 by default; N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --model gemma3-270m \
  --methods alphaedit --set alphaedit.replay_edits=true --set alphaedit.replay_scale=0 \
  --set alphaedit.nullspace_threshold=0.02 --set alphaedit.post_norm_damping=0.003 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-500}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-gemma3-cf-alphaedit-hold-ref-lr1-damp3e-3
