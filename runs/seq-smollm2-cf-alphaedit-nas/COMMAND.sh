#!/usr/bin/env bash
# AlphaEdit with norm anchoring of z (NAS: Liu et al. 2026, arXiv 2602.02543; factpatch's
# `norm_anchor`, docs/mass-editing.md): every edit's v* = z − r rescaled to the unedited model's
# mean ‖v*‖ over the first batch, an edit beyond twice that not written. Otherwise the 2,000-edit
# run's settings and cases (runs/seq-smollm2-cf-2000), whose checkpoints are the comparison.
# Batch 0's z (found on the unedited model with the same settings) was copied from
# runs/seq-smollm2-cf-alphaedit-contexts/alphaedit/targets/0000.safetensors, so batch 0 records no
# seconds. Resumable; N=500 (~1 h alone); N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}
.venv/bin/factpatch eval --sequential --quiet \
  --methods alphaedit --set alphaedit.norm_anchor=true \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-alphaedit-nas
