#!/usr/bin/env bash
# Sequential CounterFact editing on SmolLM2 (docs/mass-editing.md). Resumable: rerun to continue;
# a larger --n extends the run (n is not part of a run's identity).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-300}
# runs/seq-smollm2-cf holds format-1 generation settings (3 prompts with the rewrite prompt, 100 new
# tokens, top-k 50); the current defaults are the paper's, so a longer run goes to a fresh OUT.
OUT=${OUT:-runs/seq-smollm2-cf}
.venv/bin/factpatch eval --sequential --quiet \
  --methods alphaedit,memit,none,rome \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 100 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out "$OUT"
