#!/usr/bin/env bash
# Sequential editing on zsRE on Gemma 3 270M, as runs/seq-smollm2-zsre-500 on SmolLM2: the 500 zsRE
# cases in file order in batches of 100, never reverted, every edited case scored at every
# checkpoint (efficacy, paraphrase, specificity: token accuracy, the paper's zsRE convention),
# known facts and perplexity as on CounterFact. AlphaEdit at Gemma 3's defaults (v_lr 1.0, damping
# 1e-2 since 2026-12-05), MEMIT held at keys read now (`--preset sequential`: the best sequential
# MEMIT on CounterFact; the preset changes MEMIT only) at Gemma 3's MEMIT defaults (the same v_lr
# 1.0 and damping 1e-2 since 2026-12-05 05:00 UTC; MEMIT had not started then, and its planned
# settings were taken out of config.json so that it joins the run at the new defaults) and the
# unedited model.
# Resumable: rerun to continue (METHODS= chooses; N=100..500 stops early). Started 2026-12-05.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --model gemma3-270m \
  --methods "${METHODS:-alphaedit,memit,none}" --preset sequential \
  --dataset zsre:${DATA:-../shared/datasets}/zsre-500.json \
  --n "${N:-500}" --batch-size 100 --checkpoint-every 100 \
  --known ../shared/datasets/known_1000.json \
  --out runs/seq-gemma3-zsre-500
