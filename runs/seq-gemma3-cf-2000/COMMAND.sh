#!/usr/bin/env bash
# Issue 12 on Gemma 3 270M: the SmolLM2 run's protocol (runs/seq-smollm2-cf-2000/COMMAND.sh) —
# 2,000 sequential CounterFact edits in batches of 100, AlphaEdit, MEMIT, the unedited model and ROME
# on the same cases, every edited case scored every 500 edits, known facts kept and perplexity.
# Not timed yet on Gemma 3 (its 262k-token vocabulary makes every z step dearer than on SmolLM2);
# expect many hours. Resumable: rerun to continue from the patch stacks.
# MEMIT's and AlphaEdit's settings of this run (v_lr 0.5, post_norm_damping 1e-3) were Gemma 3's
# defaults until 2026-12-05, when they became 1.0 and 1e-2 (AlphaEdit's first, MEMIT's later that
# day; editing/registry.py, MODEL_DEFAULTS); they are pinned below so that the run stays resumable
# and reproducible.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --model gemma3-270m \
  --methods alphaedit,memit,none,rome \
  --set alphaedit.v_lr=0.5 --set alphaedit.post_norm_damping=0.001 \
  --set memit.v_lr=0.5 --set memit.post_norm_damping=0.001 \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-2000}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-gemma3-cf-2000
