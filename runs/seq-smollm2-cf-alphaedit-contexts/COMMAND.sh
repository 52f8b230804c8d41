#!/usr/bin/env bash
# AlphaEdit with preserve_contexts (issue 12: earlier edits lose efficacy as later batches land —
# at 1,000 edits the first 500 cases of runs/seq-smollm2-cf-2000 fell from ES 97.0 to 89.2): K_p
# keeps every context's key of each earlier edit, not only their average. Otherwise the 2,000-edit
# run's settings and cases, whose checkpoints are the comparison.
# Resumable; N=1000 (~55 min alone); N=2000 continues it.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000}
.venv/bin/factpatch eval --sequential --quiet \
  --methods alphaedit --set alphaedit.preserve_contexts=true \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-alphaedit-contexts
