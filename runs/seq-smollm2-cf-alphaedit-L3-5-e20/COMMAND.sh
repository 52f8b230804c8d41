#!/usr/bin/env bash
# Issue 12: AlphaEdit on SmolLM2 without layers 1-2 (where BOS and one neuron carry 50 and 84 % of
# tr C, so their null spaces are nearly everything: runs/alphaedit-sweep/spectrum.txt) and with the
# null space at 20 % of tr C: on the first batch ES 98 / PS 92 / NS 68 and 91.8 % of the known facts
# kept (runs/alphaedit-sweep/smollm2-corpus.jsonl). Sequential, as runs/seq-smollm2-cf-2000 (same
# cases, batches of 100, the same C; z at layer 5 as there), whose checkpoints are the comparison.
# Resumable; N=500 first (~20 min alone), N=2000 continues it (~1.5 h more).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-500}
.venv/bin/factpatch eval --sequential --quiet \
  --methods alphaedit --set alphaedit.layers=3-5 --set alphaedit.nullspace_energy=0.2 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "$N" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-smollm2-cf-alphaedit-L3-5-e20
