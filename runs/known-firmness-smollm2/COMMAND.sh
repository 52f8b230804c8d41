#!/usr/bin/env bash
# How firmly SmolLM2 knew the known_1000 facts its 2,000-edit sequential runs keep and lose
# (docs/mass-editing.md, "How firmly the lost facts were known"). Reads the runs' health entries and
# one unedited pass over known_1000; about a minute and a half at one torch thread (2026-12-05).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/known_facts_firmness.py \
  runs/seq-smollm2-cf-alphaedit-hold-ref:alphaedit runs/seq-smollm2-cf-alphaedit-hold:alphaedit \
  runs/seq-smollm2-cf-memit-hold:memit runs/seq-smollm2-cf-memit-replay:memit \
  --names "AlphaEdit held (reference null space),AlphaEdit held,MEMIT --preset sequential,MEMIT replay" \
  --out runs/known-firmness-smollm2
cp runs/known-firmness-smollm2/firmness.png docs/img/known-firmness-smollm2.png
