#!/usr/bin/env bash
# How firmly Gemma 3 270M knew the known_1000 facts its 2,000-edit sequential runs (at its defaults
# from 2026-12-05) keep and lose (docs/mass-editing.md, "How firmly the lost facts were known").
# Reads the runs' health entries and one unedited pass over known_1000; about a minute at one torch
# thread (2026-12-05).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/known_facts_firmness.py \
  runs/seq-gemma3-cf-alphaedit-lr1-damp:alphaedit runs/seq-gemma3-cf-alphaedit-hold-ref-lr1-damp:alphaedit \
  runs/seq-gemma3-cf-memit-hold-lr1-damp:memit runs/seq-gemma3-cf-memit-lr1-damp:memit \
  --names "AlphaEdit,AlphaEdit held (reference null space),MEMIT --preset sequential,MEMIT" \
  --out runs/known-firmness-gemma3
cp runs/known-firmness-gemma3/firmness.png docs/img/known-firmness-gemma3.png
