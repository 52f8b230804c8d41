#!/usr/bin/env bash
# AlphaEdit with each z stopped once the new object is the most probable continuation in every
# context (ENCORE's most-probable early stopping, Gupta et al. 2025; factpatch's
# `early_stop_most_probable`; docs/mass-editing.md, "Stopping z once the new object is likely"). On
# one batch it kept ten more known facts for nine points of PS; ENCORE's claim is about many batches,
# so this is the 2,000-edit run's settings and cases (runs/seq-smollm2-cf-2000, whose checkpoints
# are the comparison) with that one change. Resumable; N=500 (~1 h alone); N=1000, N=2000 continue it.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}
.venv/bin/factpatch eval --sequential --quiet \
  --methods alphaedit --set alphaedit.early_stop_most_probable=true \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-alphaedit-mpes
