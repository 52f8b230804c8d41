#!/usr/bin/env bash
# One batch of 100 AlphaEdit edits on SmolLM2 (CounterFact's first 100), the defaults against
# --preset fast, side by side in one process, on the AVX2-only host (machine.txt), where the preset
# keeps float32 (core.models.native_bfloat16) and so is v_lr 2.0 and nothing else. Run it alone.
cd "$(dirname "$0")/../../../benchmarks" && ../.venv/bin/python value_settings.py --method alphaedit --n 100 \
  --rounds 1 --variant default: --variant fast:preset=fast --json ../runs/bench/alphaedit-fast-avx2-2026-12-03/alphaedit.json
