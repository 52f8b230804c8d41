#!/usr/bin/env bash
# Gemma 3 270M, MEMIT as the papers run it sequentially (each batch written on the weights it finds,
# no earlier edit held) at Gemma 3's MEMIT defaults since 2026-12-05: z's Adam step v_lr 1.0 and the
# post-norm mapping's damping 1e-2 (editing/registry.py, MODEL_DEFAULTS). Those defaults were chosen
# on one batch and on MEMIT held (runs/seq-gemma3-cf-memit-hold-lr1-damp); this run checks them on
# the protocol they had not been measured on. The comparison is MEMIT in
# runs/seq-gemma3-cf-2000-postnorm (same cases, batches, checkpoints; v_lr 0.5, damping 1e-3):
#   .venv/bin/factpatch eval paired runs/seq-gemma3-cf-2000-postnorm runs/seq-gemma3-cf-memit-lr1-damp \
#     --method memit --edits N
# Batch 0's z (v_lr 1.0 on the unedited model; z does not depend on the method or on holding) was
# copied from runs/seq-gemma3-cf-memit-hold-lr1-damp/memit/targets/0000, so batch 0 records no
# seconds. Started 2026-12-05. Resumable; N=500 by default; N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --model gemma3-270m --methods memit \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-500}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-gemma3-cf-memit-lr1-damp
