#!/usr/bin/env bash
# Gemma 3 270M, AlphaEdit on one request at a time (each CounterFact case edited alone on the
# unedited model and reverted, as `factpatch eval` scores ROME), at three settings:
#   defaults/   Gemma 3's AlphaEdit defaults since 2026-12-05 (v_lr 1.0, post-norm damping 1e-2),
#               chosen on batches of 100 (runs/seq-gemma3-cf-alphaedit-lr1-damp)
#   damp1e-3/   v_lr 1.0 with the earlier damping 1e-3
#   earlier/    the earlier defaults (v_lr 0.5, damping 1e-3)
#   fast/       the defaults with `--preset fast` (z in bfloat16 where the CPU computes it natively;
#               the preset leaves Gemma 3's v_lr as it is)
# The question: one request alone (Eiffel Tower -> Rome) wrote less under the new defaults
# (P 0.20 against 0.67; runs/seq-gemma3-cf-alphaedit-lr1-damp/small-batches). Is that the rule for
# lone edits? Resumable; N=20 by default (rerun with a larger N to extend).
set -euo pipefail
cd "$(dirname "$0")/../.."
run() {
  local out=$1; shift
  .venv/bin/factpatch eval --quiet --model gemma3-270m --methods alphaedit "$@" \
    --dataset counterfact:../shared/datasets/counterfact-train.json --n "${N:-20}" \
    --threads 1 --out "runs/eval-gemma3-cf-alphaedit-lone/$out"
}
run defaults
run damp1e-3 --set alphaedit.post_norm_damping=0.001
run earlier --set alphaedit.v_lr=0.5 --set alphaedit.post_norm_damping=0.001
run fast --preset fast
