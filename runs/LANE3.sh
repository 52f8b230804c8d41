#!/usr/bin/env bash
# Third lane from 2026-12-05 (second session), once runs/LANE2.sh has ended: Gemma 3's top layer on
# one batch of 100 (the last block of runs/alphaedit-sweep/COMMAND.sh). One torch thread, beside
# runs/LANE1.sh. Logs to runs/QUEUE.log.
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
echo "$(date -u +%FT%TZ) start gemma3 top-layer sweep" >> "$log"
OMP_NUM_THREADS=1 .venv/bin/python scripts/alphaedit_sweep.py --run runs/seq-gemma3-cf-memit-lr1-damp \
  --known ../shared/datasets/known_1000.json --out runs/alphaedit-sweep/gemma3-top-layer.jsonl \
  --grid "memit:layers=4-8" "alphaedit:layers=4-8" "memit:layers=2-8" "alphaedit:layers=2-8" \
  > runs/alphaedit-sweep/QUEUE-top-layer.out 2>&1
echo "$(date -u +%FT%TZ) end gemma3 top-layer sweep (exit $?)" >> "$log"
