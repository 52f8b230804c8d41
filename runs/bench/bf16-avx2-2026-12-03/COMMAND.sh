#!/usr/bin/env bash
# float32 against bfloat16 v* for ROME (MEMIT's 6 contexts) on SmolLM2's first 5 CounterFact cases,
# side by side in one process, on a host without bf16 units (machine.txt); run alone.
cd "$(dirname "$0")/../../../benchmarks" && ../.venv/bin/python value_settings.py --method rome --n 5 \
  --variant 'float32:prefixes=[[5,10]]' --variant 'bfloat16:v_dtype=bfloat16,prefixes=[[5,10]]' \
  --json ../runs/bench/bf16-avx2-2026-12-03/smollm2-rome.json
