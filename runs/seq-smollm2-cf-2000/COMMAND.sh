#!/usr/bin/env bash
# Issue 12's main run: 2,000 sequential CounterFact edits on SmolLM2 in batches of 100, AlphaEdit,
# MEMIT, the unedited model and ROME (one edit after another) on the same cases, every edited case
# scored at each checkpoint, known facts kept and perplexity after each (docs/mass-editing.md).
# The paper's generation settings (top-k 5, 100 tokens with the prompt) on 20 cases a checkpoint.
# Resumable: rerun to continue from the patch stacks under runs/seq-smollm2-cf-2000/<method>/patches/.
# Hours of CPU: run it alone (AlphaEdit and MEMIT ~1 h each at ~3 min a batch, ROME ~3 h).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-2000}
.venv/bin/factpatch eval --sequential --quiet \
  --methods alphaedit,memit,none,rome \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-2000
