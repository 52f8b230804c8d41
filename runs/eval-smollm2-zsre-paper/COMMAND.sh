#!/usr/bin/env bash
# zsRE on SmolLM2 by the paper's convention (kmeng01/rome dsets/zsre.py: edit towards answers[0],
# "?" after the NQ question; the default since format 2), for docs/results.md "zsRE". The tables
# there until now were made with what is `--zsre-target alt` (runs/eval-smollm2-zsre*).
# Resumable: rerun to continue. Alone on the 2-core CPU: ~70 min for none+rome on 500 cases
# (ROME ~8 s a case), ~15 min for the baselines on 100; the merge and tables take seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
FP=${FP:-.venv/bin/factpatch}
ZS=zsre:${DATA:-../shared/datasets}/zsre-500.json
$FP eval --quiet --model smollm2-135m --methods none,rome --dataset "$ZS" --n 500 \
  --out runs/eval-smollm2-zsre-paper
$FP eval --quiet --model smollm2-135m --methods ft,ft+l,attn --dataset "$ZS" --n 100 \
  --out runs/eval-smollm2-zsre-paper-base
rm -rf runs/smollm2-zsre-paper
$FP eval merge runs/eval-smollm2-zsre-paper runs/eval-smollm2-zsre-paper-base --out runs/smollm2-zsre-paper --quiet
mkdir -p docs/results/smollm2-zsre-paper
cp runs/smollm2-zsre-paper/config.json runs/smollm2-zsre-paper/summary.* docs/results/smollm2-zsre-paper/
.venv/bin/python scripts/results_tables.py runs/smollm2-zsre-paper --paper
