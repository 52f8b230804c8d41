#!/usr/bin/env bash
# Gemma 3 270M, AlphaEdit, CounterFact's first 100 cases as one batch: the defaults (v_lr 1.0,
# damping 1e-2 since 2026-12-05) against `--preset fast` (z in bfloat16; the preset keeps Gemma 3's
# v_lr), side by side in one process. Run 2026-12-05 at one torch thread BESIDE a running
# sequential run, so the seconds are rough (the ratio of two back-to-back batches); the ES / PS /
# NS are what this measures.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=runs/bench/alphaedit-fast-gemma3-2026-12-05
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/value_settings.py --model gemma3-270m --method alphaedit \
  --n 100 --rounds 1 --variant default: --variant fast:preset=fast --json "$out/value_settings.json" \
  2>&1 | tee "$out/log.txt"
