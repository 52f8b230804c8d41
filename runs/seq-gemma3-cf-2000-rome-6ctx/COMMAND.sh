#!/usr/bin/env bash
# Sequential ROME on Gemma 3 270M, the 2,000-edit protocol of runs/seq-gemma3-cf-2000-postnorm (the
# same 2,000 CounterFact cases in the same order, batches of 100 one edit after another, every
# edited case scored every 500 edits, known facts and perplexity after each), with ROME's v* over
# MEMIT's 6 contexts (the bare prompt and 5 prefixes of 10 tokens) instead of ROME's 21: on Gemma 3's
# first 20 cases ES and PS the same, NS one case lower, 1.7× faster (runs/bench/rome-contexts-2026-12-01/).
# Not `--preset fast`: its bfloat16 v* is faster only on CPUs with bf16 units; this host (AMD EPYC,
# AVX2 only) spent over 80 s on one request with it on 2026-12-03.
# Why not the paper's settings: in the postnorm run's directory they took ~45 min for one batch of
# 100 on 2026-12-03's host (~25–30 s an edit), ~15 h for the 2,000 edits; its first batch is kept there.
# AlphaEdit, MEMIT and the unedited model are in runs/seq-gemma3-cf-2000-postnorm: compare with
#   factpatch eval paired runs/seq-gemma3-cf-2000-postnorm runs/seq-gemma3-cf-2000-rome-6ctx \
#     --method alphaedit --method-b rome
# Resumable (ROME's patches are versioned): rerun to continue.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/factpatch eval --sequential --quiet --model gemma3-270m --methods rome --set 'rome.prefixes=[[5, 10]]' \
  --dataset counterfact:../shared/datasets/counterfact-train.json \
  --n "${N:-2000}" --batch-size 100 --checkpoint-every 500 \
  --known ../shared/datasets/known_1000.json --generation-cases 20 \
  --out runs/seq-gemma3-cf-2000-rome-6ctx
