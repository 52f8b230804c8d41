#!/usr/bin/env bash
# Issue 12's open question on SmolLM2: does AlphaEdit lose edits and known facts over many batches
# because of the settings (five layers, 1-5) or of the model's size? Eight layers (1-8; the MLP
# indirect effect at the last subject token stays at 0.04-0.09 through layer 11,
# runs/trace-smollm2/summary.json) give the null space of every layer fewer facts to hold.
# Everything else as runs/seq-smollm2-cf-2000 (same cases, batches of 100, the same C), so its
# checkpoint at 500 edits (layers 1-5) is the comparison. Resumable; ~25 min alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}
.venv/bin/factpatch eval --sequential --quiet \
  --methods alphaedit --set alphaedit.layers=1-8 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-500-alphaedit-L1-8
