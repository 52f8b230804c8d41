#!/usr/bin/env bash
# Gemma 3 270M, MEMIT on one request at a time (each CounterFact case edited alone on the unedited
# model and reverted, as `factpatch eval` scores ROME), at two settings:
#   defaults/   Gemma 3's MEMIT defaults since 2026-12-05 (v_lr 1.0, post-norm damping 1e-2),
#               chosen on batches of 100 (runs/seq-gemma3-cf-memit-hold-lr1-damp)
#   earlier/    the earlier defaults (the reference's v_lr 0.5, damping 1e-3)
# The question: the defaults were chosen on batches; what do they do to a lone edit? (AlphaEdit's
# answer with the same two settings: runs/eval-gemma3-cf-alphaedit-lone.) Started 2026-12-05.
# Resumable; N=50 by default (rerun with a larger N to extend).
set -euo pipefail
cd "$(dirname "$0")/../.."
run() {
  local out=$1; shift
  .venv/bin/factpatch eval --quiet --model gemma3-270m --methods memit "$@" \
    --dataset counterfact:../shared/datasets/counterfact-train.json --n "${N:-50}" \
    --threads 1 --out "runs/eval-gemma3-cf-memit-lone/$out"
}
run defaults
run earlier --set memit.v_lr=0.5 --set memit.post_norm_damping=0.001
