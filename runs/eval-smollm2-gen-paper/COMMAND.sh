#!/usr/bin/env bash
# Fluency and consistency on SmolLM2 with the paper's generation settings (kmeng01/rome
# generate_fast: top-k 5, 100 tokens per text including the prompt, every generation prompt of
# the case; the defaults since format 2), for docs/results.md "Fluency and consistency". The table
# there until now (runs/eval-smollm2-gen) used top-k 50, 100 new tokens and 3 prompts per case
# including the rewrite prompt; the flattened CounterFact layout now derives 2 (the paraphrase and
# "{subject} is"). Resumable. Expected: ~25–35 min alone on the 2-core CPU (the earlier run took
# 42 min beside another run with 3 prompts of 100 new tokens each).
set -euo pipefail
cd "$(dirname "$0")/../.."
FP=${FP:-.venv/bin/factpatch}
CF=counterfact:${DATA:-../shared/datasets}/counterfact-train.json
$FP eval --quiet --model smollm2-135m --methods rome,ft+l,attn,none --generation --dataset "$CF" --n 30 \
  --out runs/eval-smollm2-gen-paper
mkdir -p docs/results/smollm2-generation-paper
cp runs/eval-smollm2-gen-paper/config.json runs/eval-smollm2-gen-paper/summary.* docs/results/smollm2-generation-paper/
.venv/bin/python scripts/results_tables.py runs/eval-smollm2-gen-paper --paper
