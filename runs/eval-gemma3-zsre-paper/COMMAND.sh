#!/usr/bin/env bash
# zsRE on Gemma 3 by the paper's convention (kmeng01/rome dsets/zsre.py: edit towards answers[0],
# "?" after the NQ question; the default since format 2), for docs/results.md "zsRE". The tables
# there until now were made with what is `--zsre-target alt` (runs/eval-gemma3-zsre*).
# Resumable: rerun to continue. Alone on the 2-core CPU: ~85 min for none+rome on 500 cases
# (6.0 cases a minute before), ~8 min for the baselines on 50; the merge and tables take seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
FP=${FP:-.venv/bin/factpatch}
ZS=zsre:${DATA:-../shared/datasets}/zsre-500.json
$FP eval --quiet --model gemma3-270m --methods none,rome --dataset "$ZS" --n 500 \
  --out runs/eval-gemma3-zsre-paper
$FP eval --quiet --model gemma3-270m --methods ft,ft+l,attn --dataset "$ZS" --n 50 \
  --out runs/eval-gemma3-zsre-paper-base
rm -rf runs/gemma3-zsre-paper
$FP eval merge runs/eval-gemma3-zsre-paper runs/eval-gemma3-zsre-paper-base --out runs/gemma3-zsre-paper --quiet
mkdir -p docs/results/gemma3-zsre-paper
cp runs/gemma3-zsre-paper/config.json runs/gemma3-zsre-paper/summary.* docs/results/gemma3-zsre-paper/
.venv/bin/python scripts/results_tables.py runs/gemma3-zsre-paper --paper
